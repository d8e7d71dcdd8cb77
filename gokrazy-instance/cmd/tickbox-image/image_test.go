package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// A test image is sparse: its size and the few byte ranges (extents)
// that are not zero. The fuzz target reads images in the same form, so
// that a 1.2 GB image is a few hundred bytes of corpus.

type extent struct {
	off  int64
	data []byte
}

type sparseImage struct {
	size int64
	ext  []extent
}

// ReadAt reads zeros except where an extent lies; later extents win.
func (s *sparseImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > s.size-off {
		n = int(s.size - off)
	}
	clear(p[:n])
	for _, e := range s.ext {
		lo, hi := max(off, e.off), min(off+int64(n), e.off+int64(len(e.data)))
		if lo < hi {
			copy(p[lo-off:hi-off], e.data[lo-e.off:hi-e.off])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// encode is the fuzz corpus form: the size, then each extent as its
// offset, length (uint16) and bytes, all little-endian. An extent's
// trailing zeros are left out, except where they cover an earlier one.
func (s *sparseImage) encode() []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(s.size))
	for i, e := range s.ext {
		data := e.data
		if !overlapsEarlier(s.ext[:i], e) {
			data = bytes.TrimRight(data, "\x00")
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(e.off))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(data)))
		b = append(b, data...)
	}
	return b
}

func overlapsEarlier(earlier []extent, e extent) bool {
	for _, x := range earlier {
		if x.off < e.off+int64(len(e.data)) && e.off < x.off+int64(len(x.data)) {
			return true
		}
	}
	return false
}

// decodeSparse reads the corpus form; sizes and offsets are bounded to
// 2^41 bytes so that no arithmetic overflows.
func decodeSparse(b []byte) (*sparseImage, bool) {
	const limit = 1 << 41
	if len(b) < 8 {
		return nil, false
	}
	s := &sparseImage{size: int64(binary.LittleEndian.Uint64(b) % limit)}
	b = b[8:]
	for len(b) >= 10 {
		off := int64(binary.LittleEndian.Uint64(b) % limit)
		n := int(binary.LittleEndian.Uint16(b[8:]))
		b = b[10:]
		if n > len(b) {
			n = len(b)
		}
		s.ext = append(s.ext, extent{off, b[:n]})
		b = b[n:]
	}
	return s, true
}

// writeFile makes the image a real sparse file.
func (s *sparseImage) writeFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(s.size); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.ext {
		if e.off+int64(len(e.data)) > s.size {
			continue // a truncated image loses what lay beyond its end
		}
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	mib        = 1 << 20
	firstLBA   = 8192
	imgSize    = 1258299392
	bootFSSize = 32814 * 512
	squashUsed = 62961728
	partUUID   = 0xe6a8da4d
)

// gokrazyGUID is the unique GUID gok gives partition n of a host whose
// hash is partUUID, in GPT's byte order.
func gokrazyGUID(n byte) []byte {
	g := make([]byte, 16)
	binary.LittleEndian.PutUint32(g, 0x60c24cc1)
	binary.LittleEndian.PutUint16(g[4:], 0xf3f9)
	binary.LittleEndian.PutUint16(g[6:], 0x427a)
	g[8], g[9] = 0x81, 0x99
	binary.BigEndian.PutUint32(g[10:], partUUID)
	g[14], g[15] = 0, n
	return g
}

// imageParts is gok's layout of a 1.2 GB image, in sectors.
var imageParts = imageParts4{
	{firstLBA, firstLBA + 100*mib/512 - 1},
	{firstLBA + 100*mib/512, firstLBA + 600*mib/512 - 1},
	{firstLBA + 600*mib/512, firstLBA + 1100*mib/512 - 1},
	{firstLBA + 1100*mib/512, imgSize/512 - 34},
}

// imageParts4 is a layout: each partition's first and last sector.
type imageParts4 = [4][2]uint64

// testImage is a valid image in gok's layout (hybrid MBR and GPT, as
// read from one gok built), with a FAT16 boot sector and a SquashFS
// superblock; edit changes the parts before the checksums are made.

func testImage(parts imageParts4, fixCRC bool, edit func(mbr, gptHeader, entries, fat, squash []byte)) *sparseImage {
	mbr := make([]byte, 512)
	copy(mbr, []byte{0xfa, 0x31, 0xc0}) // boot code
	binary.LittleEndian.PutUint32(mbr[440:], partUUID)
	// Partition 1: the FAT, for the Raspberry Pi's boot loader;
	// partition 2: protective, for Linux to see the GPT.
	copy(mbr[446:], []byte{0x80, 0xfe, 0xff, 0xff, 0x0c, 0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(mbr[454:], firstLBA)
	binary.LittleEndian.PutUint32(mbr[458:], 100*mib/512)
	copy(mbr[462:], []byte{0x00, 0xfe, 0xff, 0xff, 0xee, 0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(mbr[470:], 1)
	binary.LittleEndian.PutUint32(mbr[474:], firstLBA-1)
	mbr[510], mbr[511] = 0x55, 0xaa

	entries := make([]byte, 128*128)
	for i, p := range parts {
		e := entries[i*128:]
		copy(e, []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4})
		copy(e[16:], gokrazyGUID(byte(i+1)))
		binary.LittleEndian.PutUint64(e[32:], p[0])
		binary.LittleEndian.PutUint64(e[40:], p[1])
	}
	h := make([]byte, 512)
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x10000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1)
	binary.LittleEndian.PutUint64(h[32:], imgSize/512-1)
	binary.LittleEndian.PutUint64(h[40:], 34)
	binary.LittleEndian.PutUint64(h[48:], imgSize/512-34)
	copy(h[56:], gokrazyGUID(0))
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)

	fat := make([]byte, 512)
	copy(fat, []byte{0xeb, 0x3c, 0x90})
	copy(fat[3:], "gokrazy!")
	binary.LittleEndian.PutUint16(fat[11:], 512)
	fat[13] = 4                                    // sectors per cluster
	binary.LittleEndian.PutUint16(fat[14:], 4)     // reserved
	fat[16] = 1                                    // FATs
	binary.LittleEndian.PutUint32(fat[32:], 32814) // total sectors
	copy(fat[54:], "FAT16   ")
	fat[510], fat[511] = 0x55, 0xaa

	sq := make([]byte, 96)
	binary.LittleEndian.PutUint32(sq, squashfsMagic)
	binary.LittleEndian.PutUint32(sq[12:], 131072)
	binary.LittleEndian.PutUint16(sq[22:], 17)
	binary.LittleEndian.PutUint16(sq[28:], 4)
	binary.LittleEndian.PutUint64(sq[40:], squashUsed)

	if edit != nil {
		edit(mbr, h, entries, fat, sq)
	}
	if fixCRC {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:binary.LittleEndian.Uint32(h[12:])%513]))
	}
	return &sparseImage{size: imgSize, ext: []extent{
		{0, mbr}, {512, h}, {1024, entries},
		{int64(parts[0][0]) * 512, fat}, {int64(parts[1][0]) * 512, sq},
	}}
}

// mbrOnlyImage is the layout gok uses where a board cannot have a GPT.
func mbrOnlyImage() *sparseImage {
	img := testImage(imageParts, true, nil)
	mbr := bytes.Clone(img.ext[0].data)
	for i, p := range imageParts {
		e := mbr[446+16*i:]
		e[4] = 0x83
		if i == 0 {
			e[4] = 0x0c
		}
		binary.LittleEndian.PutUint32(e[8:], uint32(p[0]))
		binary.LittleEndian.PutUint32(e[12:], uint32(p[1]-p[0]+1))
	}
	img.ext[0].data = mbr
	img.ext = append(img.ext[:1], img.ext[3:]...) // no GPT
	return img
}

// badImages are the refusals, each with a part of its message.
func badImages() []struct {
	name string
	img  *sparseImage
	want string
} {
	trunc := func(size int64) *sparseImage {
		img := testImage(imageParts, true, nil)
		img.size = size
		return img
	}
	withParts := func(f func(p *imageParts4)) *sparseImage {
		p := imageParts
		f(&p)
		return testImage(p, true, nil)
	}
	edit := func(f func(mbr, h, entries, fat, sq []byte)) *sparseImage { return testImage(imageParts, true, f) }
	return []struct {
		name string
		img  *sparseImage
		want string
	}{
		{"empty file", &sparseImage{}, "the MBR (bytes 0 to 512) lies beyond the end of the file (0 bytes)"},
		{"truncated in the partition table", trunc(4096), "the GPT partition entries (bytes 1024 to 17408) lies beyond the end of the file"},
		{"truncated in root A", trunc(300 * mib), "the root A partition (2, bytes 109051904 to 633339904) ends beyond the end of the file (314572800 bytes): a truncated image?"},
		{"truncated in /perm", trunc(1199 * mib), "the perm partition (4, bytes 1157627904 to 1258282496) ends beyond the end of the file (1257242624 bytes)"},
		{"no MBR signature", edit(func(mbr, _, _, _, _ []byte) { mbr[511] = 0 }), "no MBR signature"},
		{"no GPT header", edit(func(_, h, _, _, _ []byte) { copy(h, "EFI BART") }), "LBA 1 holds no GPT header"},
		{"GPT header damaged", testImage(imageParts, true, nil).corrupt(512+60, 0x01), "GPT header CRC32 is"},
		{"GPT entries damaged", testImage(imageParts, true, nil).corrupt(1024+128+40, 0x10), "GPT partition entries CRC32 is"},
		{"GPT with 3 entries", edit(func(_, h, _, _, _ []byte) { binary.LittleEndian.PutUint32(h[80:], 3) }), "GPT has 3 partition entries"},
		{"GPT entry size 0", edit(func(_, h, _, _, _ []byte) { binary.LittleEndian.PutUint32(h[84:], 0) }), "GPT partition entry size 0"},
		{"GPT entries in the MBR", edit(func(_, h, _, _, _ []byte) { binary.LittleEndian.PutUint64(h[72:], 0) }), "LBA 0 are out of range"},
		{"perm unused", edit(func(_, _, e, _, _ []byte) { clear(e[3*128 : 3*128+16]) }), "GPT partition 4 is unused"},
		{"partition ends before it starts", withParts(func(p *imageParts4) { p[2][1] = p[2][0] - 1 }), "GPT partition 3 has LBAs"},
		{"partitions overlap", withParts(func(p *imageParts4) { p[2][0] -= 8; p[2][1] -= 8 }), "the root B partition (3) overlaps the root A partition"},
		{"roots differ in size", withParts(func(p *imageParts4) { p[2][1] -= 8 }), "root A (524288000 bytes) and root B (524283904 bytes) differ in size"},
		{"partition in the table", edit(func(_, _, e, _, _ []byte) { binary.LittleEndian.PutUint64(e[32:], 20) }),
			"the boot partition (1) starts inside the partition table"},
		{"no FAT signature", edit(func(_, _, _, fat, _ []byte) { fat[510] = 0 }), "no FAT boot sector signature"},
		{"FAT without a jump", edit(func(_, _, _, fat, _ []byte) { fat[0] = 0 }), "not a jump"},
		{"FAT sector size", edit(func(_, _, _, fat, _ []byte) { binary.LittleEndian.PutUint16(fat[11:], 100) }), "100 bytes per sector"},
		{"FAT cluster size", edit(func(_, _, _, fat, _ []byte) { fat[13] = 3 }), "3 sectors per cluster"},
		{"FAT bigger than its partition", edit(func(_, _, _, fat, _ []byte) { binary.LittleEndian.PutUint32(fat[32:], 300000) }),
			"the boot partition's FAT (153600000 bytes) is larger than the partition (104857600 bytes)"},
		{"FAT of no sectors", edit(func(_, _, _, fat, _ []byte) { binary.LittleEndian.PutUint32(fat[32:], 0) }), "has no sectors"},
		{"no SquashFS", edit(func(_, _, _, _, sq []byte) { copy(sq, "sqsh") }), "root A holds no SquashFS"},
		{"SquashFS 3", edit(func(_, _, _, _, sq []byte) { sq[28] = 3 }), "version 3, want 4"},
		{"SquashFS block size", edit(func(_, _, _, _, sq []byte) { sq[22] = 18 }), "block size 131072 (log 18)"},
		{"SquashFS bigger than root A", edit(func(_, _, _, _, sq []byte) { binary.LittleEndian.PutUint64(sq[40:], 600*mib) }),
			"root A's SquashFS uses 629145600 bytes, more than the partition's 524288000"},
		{"SquashFS of nothing", edit(func(_, _, _, _, sq []byte) { binary.LittleEndian.PutUint64(sq[40:], 96) }), "no more than its superblock"},
		{"MBR only, wrong types", func() *sparseImage {
			img := mbrOnlyImage()
			img.ext[0].data[446+16*2+4] = 0x07
			return img
		}(), "MBR partition 3 has type 0x07, want Linux (0x83)"},
	}
}

// corrupt returns the image with one byte at off XORed with x (after the
// checksums were made).
func (s *sparseImage) corrupt(off int64, x byte) *sparseImage {
	b := make([]byte, 1)
	s.ReadAt(b, off)
	s.ext = append(s.ext, extent{off, []byte{b[0] ^ x}})
	return s
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  *sparseImage
		gpt  bool
		uuid string
	}{
		{"gpt", testImage(imageParts, true, nil), true, "60c24cc1-f3f9-427a-8199-e6a8da4d0004"},
		{"mbr only", mbrOnlyImage(), false, "e6a8da4d-04"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := parseImage(tc.img, tc.img.size)
			if err != nil {
				t.Fatal(err)
			}
			if l.gpt != tc.gpt || l.permUUID != tc.uuid {
				t.Errorf("gpt %v, perm UUID %s; want %v, %s", l.gpt, l.permUUID, tc.gpt, tc.uuid)
			}
			if l.boot() != (span{firstLBA * 512, 100 * mib}) || l.rootA() != (span{firstLBA*512 + 100*mib, 500 * mib}) {
				t.Errorf("boot %+v, root A %+v", l.boot(), l.rootA())
			}
			if l.parts[3].end() != int64(imageParts[3][1]+1)*512 {
				t.Errorf("perm %+v", l.parts[3])
			}
			// The SquashFS goes in 4 KiB units; the FAT as it is.
			if l.bootFS != bootFSSize || l.rootFS != (squashUsed+4095)&^4095 {
				t.Errorf("bootFS %d, rootFS %d", l.bootFS, l.rootFS)
			}
		})
	}
	for _, tc := range badImages() {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseImage(tc.img, tc.img.size)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseImage: %v, want an error with %q", err, tc.want)
			}
			if !errors.Is(err, errBadImage) {
				t.Errorf("%v does not wrap errBadImage", err)
			}
		})
	}
}

// TestOpenImage reads real sparse files, so that a truncated file is cut
// where the file system cuts it.
func TestOpenImage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.img")
	testImage(imageParts, true, nil).writeFile(t, good)
	f, l, err := openImage(good)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if l.size != imgSize {
		t.Errorf("size %d", l.size)
	}
	cut := filepath.Join(dir, "cut.img")
	testImage(imageParts, true, nil).writeFile(t, cut)
	if err := os.Truncate(cut, 700*mib); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openImage(cut); err == nil || !strings.Contains(err.Error(), "the root B partition (3, bytes") {
		t.Errorf("truncated file: %v", err)
	}
	if _, _, err := openImage(dir); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, _, err := openImage(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParseImage: no image makes the parser panic, and what it accepts
// lies within the file.
func FuzzParseImage(f *testing.F) {
	f.Add(testImage(imageParts, true, nil).encode())
	f.Add(mbrOnlyImage().encode())
	for _, tc := range badImages() {
		f.Add(tc.img.encode())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, ok := decodeSparse(data)
		if !ok {
			return
		}
		l, err := parseImage(img, img.size)
		if err != nil {
			if !errors.Is(err, errBadImage) {
				t.Fatalf("error %v does not wrap errBadImage", err)
			}
			return
		}
		ends := []int64{}
		for _, p := range l.parts {
			if p.start < 512 || p.size <= 0 || p.end() > img.size {
				t.Fatalf("partition %+v outside the file of %d bytes", p, img.size)
			}
			ends = append(ends, p.start, p.end())
		}
		if !sort.SliceIsSorted(ends, func(i, j int) bool { return ends[i] < ends[j] }) {
			t.Fatalf("partitions out of order: %+v", l.parts)
		}
		if l.bootFS <= 0 || l.bootFS > l.boot().size || l.rootFS <= 96 || l.rootFS > l.rootA().size {
			t.Fatalf("boot FS %d of %d, root FS %d of %d", l.bootFS, l.boot().size, l.rootFS, l.rootA().size)
		}
	})
}
