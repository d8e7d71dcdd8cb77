package serial

import (
	"fmt"
	"os"
	"testing"
)

func TestGenSeed(t *testing.T) {
	pkt := make([]byte, 255)
	pkt[0], pkt[1], pkt[2], pkt[3] = 1, 9, 8, 0xc0
	for i := 4; i < len(pkt); i++ {
		pkt[i] = byte(i*7 + 3)
	}
	os.WriteFile("testdata/fuzz/FuzzDeframer/max_mtu", []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", Encode(pkt))), 0o644)
}
