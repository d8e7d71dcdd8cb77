package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// A full gokrazy image, as gok writes it, holds four partitions: the boot
// file system (FAT), root A and root B (SquashFS; a new image fills root A
// and leaves root B empty) and /perm. It is partitioned either with a
// hybrid MBR (the FAT partition and a protective 0xEE entry) and a GPT
// naming all four, or, on boards that cannot have a GPT, with an MBR
// alone. An update sends the first 446 bytes of the image (the MBR's boot
// code, which names the kernel's sectors on a PC), the boot file system
// and root A's file system; parseImage finds and checks them.

// sector is the sector size gokrazy images use.
const sector = 512

// errBadImage is wrapped by every refusal of parseImage.
var errBadImage = errors.New("not a gokrazy image")

// span is a byte range of the image file.
type span struct{ start, size int64 }

func (s span) end() int64 { return s.start + s.size }

// imageLayout is what an update needs of a full image.
type imageLayout struct {
	size  int64 // the file's size
	gpt   bool  // partitioned with a GPT (else MBR only)
	table int64 // where the partition table ends
	parts [4]span
	// bootFS and rootFS are the bytes of the boot partition's FAT and of
	// root A's SquashFS (its bytes_used, rounded up to 4 KiB within the
	// partition): what an update sends.
	bootFS, rootFS int64
	// permUUID is /perm's partition UUID as the box's status names it:
	// the GPT entry's unique GUID, or the MBR's disk signature and "-04".
	// gok derives it from the hostname, like the root= of the image's
	// kernel command line; an image whose UUIDs differ from the box's
	// would not find its root file system there.
	permUUID string
}

func (l *imageLayout) boot() span  { return l.parts[0] }
func (l *imageLayout) rootA() span { return l.parts[1] }

// badf is a refusal of the image.
func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errBadImage, fmt.Sprintf(format, a...))
}

// readAt reads exactly len(b) bytes at off, or says where the file ends.
func readAt(r io.ReaderAt, size int64, b []byte, off int64, what string) error {
	if off < 0 || off > size || int64(len(b)) > size-off {
		return badf("%s (bytes %d to %d) lies beyond the end of the file (%d bytes)", what, off, off+int64(len(b)), size)
	}
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %s: %w", what, err)
}

// openImage opens and checks the image file at path.
func openImage(path string) (*os.File, *imageLayout, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, badf("%s is not a regular file", path)
	}
	l, err := parseImage(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, l, nil
}

// parseImage reads the partition table of a full gokrazy image of size
// bytes and checks everything an update sends: four partitions in order,
// none overlapping, each within the file; a FAT boot sector at the start
// of the boot partition whose file system fits it; and a SquashFS 4.0
// superblock at the start of root A whose bytes_used fits root A.
func parseImage(r io.ReaderAt, size int64) (*imageLayout, error) {
	l := &imageLayout{size: size}
	mbr := make([]byte, sector)
	if err := readAt(r, size, mbr, 0, "the MBR"); err != nil {
		return nil, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, badf("no MBR signature (0x55aa) in the first sector")
	}
	protective := false
	for i := 0; i < 4; i++ {
		if mbr[446+16*i+4] == 0xee {
			protective = true
		}
	}
	var err error
	if protective {
		l.gpt = true
		err = l.readGPT(r, mbr)
	} else {
		err = l.readMBR(mbr)
	}
	if err != nil {
		return nil, err
	}
	names := [4]string{"boot", "root A", "root B", "perm"}
	for i, p := range l.parts {
		switch {
		case p.size <= 0:
			return nil, badf("the %s partition (%d) is empty", names[i], i+1)
		case p.start < l.table:
			return nil, badf("the %s partition (%d) starts inside the partition table", names[i], i+1)
		case p.end() > size:
			return nil, badf("the %s partition (%d, bytes %d to %d) ends beyond the end of the file (%d bytes): a truncated image?",
				names[i], i+1, p.start, p.end(), size)
		case i > 0 && p.start < l.parts[i-1].end():
			return nil, badf("the %s partition (%d) overlaps the %s partition", names[i], i+1, names[i-1])
		}
	}
	if l.parts[1].size != l.parts[2].size {
		return nil, badf("root A (%d bytes) and root B (%d bytes) differ in size", l.parts[1].size, l.parts[2].size)
	}
	if l.bootFS, err = checkFAT(r, size, l.boot()); err != nil {
		return nil, err
	}
	if l.rootFS, err = checkSquashFS(r, size, l.rootA()); err != nil {
		return nil, err
	}
	return l, nil
}

// readMBR takes the four partitions from an MBR-only table: FAT (0x0c or
// 0x0b) and three Linux (0x83) entries.
func (l *imageLayout) readMBR(mbr []byte) error {
	want := [4]string{"FAT (0x0c)", "Linux (0x83)", "Linux (0x83)", "Linux (0x83)"}
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 446+16*(i+1)]
		typ := e[4]
		ok := typ == 0x83
		if i == 0 {
			ok = typ == 0x0c || typ == 0x0b
		}
		if !ok {
			return badf("MBR partition %d has type 0x%02x, want %s", i+1, typ, want[i])
		}
		l.table = sector
		l.parts[i] = span{
			start: int64(binary.LittleEndian.Uint32(e[8:])) * sector,
			size:  int64(binary.LittleEndian.Uint32(e[12:])) * sector,
		}
	}
	l.permUUID = fmt.Sprintf("%08x-04", binary.LittleEndian.Uint32(mbr[440:]))
	return nil
}

// GPT header fields (UEFI 2.x, 5.3.2).
const (
	gptHeaderMin   = 92
	gptEntryMin    = 128
	gptMaxEntries  = 1024
	gptMaxEntrySz  = 4096
	gptEntriesSize = 4 << 20 // the most read of the entry array
	// maxLBA bounds sector numbers so that byte offsets cannot overflow.
	maxLBA = 1 << 40
)

var gptSignature = []byte("EFI PART")

// readGPT takes the first four partitions from the primary GPT, checking
// both of its CRC32s.
func (l *imageLayout) readGPT(r io.ReaderAt, mbr []byte) error {
	h := make([]byte, sector)
	if err := readAt(r, l.size, h, sector, "the GPT header"); err != nil {
		return err
	}
	if !bytes.Equal(h[:8], gptSignature) {
		return badf("the MBR has a protective GPT entry but LBA 1 holds no GPT header")
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < gptHeaderMin || hsize > sector {
		return badf("GPT header size %d is out of range", hsize)
	}
	crc := binary.LittleEndian.Uint32(h[16:])
	hdr := bytes.Clone(h[:hsize])
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	if got := crc32.ChecksumIEEE(hdr); got != crc {
		return badf("GPT header CRC32 is 0x%08x, the header says 0x%08x", got, crc)
	}
	entriesLBA := binary.LittleEndian.Uint64(h[72:])
	n := binary.LittleEndian.Uint32(h[80:])
	esize := binary.LittleEndian.Uint32(h[84:])
	ecrc := binary.LittleEndian.Uint32(h[88:])
	if n < 4 || n > gptMaxEntries {
		return badf("GPT has %d partition entries, want 4 to %d", n, gptMaxEntries)
	}
	if esize < gptEntryMin || esize > gptMaxEntrySz || esize%8 != 0 {
		return badf("GPT partition entry size %d is out of range", esize)
	}
	total := int64(n) * int64(esize)
	if total > gptEntriesSize {
		return badf("GPT partition entries take %d bytes, more than %d", total, gptEntriesSize)
	}
	if entriesLBA < 2 || entriesLBA > maxLBA {
		return badf("GPT partition entries at LBA %d are out of range", entriesLBA)
	}
	entries := make([]byte, total)
	if err := readAt(r, l.size, entries, int64(entriesLBA)*sector, "the GPT partition entries"); err != nil {
		return err
	}
	l.table = int64(entriesLBA)*sector + total
	if got := crc32.ChecksumIEEE(entries); got != ecrc {
		return badf("GPT partition entries CRC32 is 0x%08x, the header says 0x%08x", got, ecrc)
	}
	for i := 0; i < 4; i++ {
		e := entries[i*int(esize):]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			return badf("GPT partition %d is unused", i+1)
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if last < first || last > maxLBA {
			return badf("GPT partition %d has LBAs %d to %d", i+1, first, last)
		}
		l.parts[i] = span{start: int64(first) * sector, size: int64(last-first+1) * sector}
		if i == 3 {
			l.permUUID = guidString(e[16:32])
		}
	}
	return nil
}

// guidString formats a GUID stored in GPT's mixed-endian layout.
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// checkFAT checks the boot sector at the start of p and returns the size
// of its FAT file system (total sectors times sector size).
func checkFAT(r io.ReaderAt, size int64, p span) (int64, error) {
	b := make([]byte, sector)
	if err := readAt(r, size, b, p.start, "the boot partition's boot sector"); err != nil {
		return 0, err
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return 0, badf("the boot partition has no FAT boot sector signature (0x55aa)")
	}
	if b[0] != 0xeb && b[0] != 0xe9 {
		return 0, badf("the boot partition's boot sector starts with 0x%02x, not a jump (0xeb or 0xe9)", b[0])
	}
	bps := int64(binary.LittleEndian.Uint16(b[11:]))
	spc := b[13]
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return 0, badf("the boot partition's FAT has %d bytes per sector", bps)
	}
	if spc == 0 || spc&(spc-1) != 0 {
		return 0, badf("the boot partition's FAT has %d sectors per cluster", spc)
	}
	if b[16] == 0 {
		return 0, badf("the boot partition's FAT has no FAT copies")
	}
	total := int64(binary.LittleEndian.Uint16(b[19:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(b[32:]))
	}
	fs := total * bps
	switch {
	case total == 0:
		return 0, badf("the boot partition's FAT has no sectors")
	case fs > p.size:
		return 0, badf("the boot partition's FAT (%d bytes) is larger than the partition (%d bytes)", fs, p.size)
	}
	return fs, nil
}

// squashfsMagic is "hsqs", SquashFS's little-endian magic.
const squashfsMagic = 0x73717368

// checkSquashFS checks the SquashFS 4.0 superblock at the start of p and
// returns what an update sends of it: bytes_used rounded up to 4 KiB,
// at most the partition.
func checkSquashFS(r io.ReaderAt, size int64, p span) (int64, error) {
	b := make([]byte, 96) // the superblock
	if err := readAt(r, size, b, p.start, "root A's SquashFS superblock"); err != nil {
		return 0, err
	}
	if m := binary.LittleEndian.Uint32(b); m != squashfsMagic {
		return 0, badf("root A holds no SquashFS (magic 0x%08x, want 0x%08x)", m, uint32(squashfsMagic))
	}
	blockSize := binary.LittleEndian.Uint32(b[12:])
	blockLog := binary.LittleEndian.Uint16(b[22:])
	major := binary.LittleEndian.Uint16(b[28:])
	used := binary.LittleEndian.Uint64(b[40:])
	switch {
	case major != 4:
		return 0, badf("root A's SquashFS is version %d, want 4", major)
	case blockLog < 12 || blockLog > 20 || blockSize != 1<<blockLog:
		return 0, badf("root A's SquashFS has block size %d (log %d)", blockSize, blockLog)
	case used <= 96:
		return 0, badf("root A's SquashFS uses %d bytes, no more than its superblock", used)
	case used > uint64(p.size):
		return 0, badf("root A's SquashFS uses %d bytes, more than the partition's %d", used, p.size)
	}
	n := (int64(used) + 4095) &^ 4095
	return min(n, p.size), nil
}
