package imapd

import (
	"bufio"
	"errors"
	"io"
)

// inflater decodes a raw DEFLATE stream (RFC 1951) for COMPRESS=DEFLATE
// (RFC 4978). compress/flate is not used because it hands out data only
// when a block ends with a stored block or the window fills, so a client
// flushing with zlib's Z_PARTIAL_FLUSH (mbsync does) would wait forever
// for the server's reply. This decoder returns what it has decoded as soon
// as decoding further would block on the network.
type inflater struct {
	r     *bufio.Reader
	bits  uint32
	nbits uint

	window [1 << 15]byte // the last 32 KiB of output, for back-references
	wpos   int
	wfull  bool
	out    []byte // decoded, not yet read

	// Block state between calls.
	inBlock   bool
	final     bool
	stored    int // bytes left in a stored block
	isStored  bool
	lit, dist *huffman
	err       error
}

func newInflater(r io.Reader) *inflater {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	return &inflater{r: br}
}

var errCorrupt = errors.New("inflate: corrupt stream")

// huffman is a canonical Huffman code: count[l] codes of length l, and
// the symbols ordered by code.
type huffman struct {
	count  [16]uint16
	symbol []uint16
}

func newHuffman(lengths []uint8) (*huffman, error) {
	h := &huffman{symbol: make([]uint16, 0, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	h.count[0] = 0
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - int(h.count[l])
		if left < 0 {
			return nil, errCorrupt // over-subscribed
		}
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + int(h.count[l])
	}
	h.symbol = h.symbol[:offs[15]+int(h.count[15])]
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return h, nil
}

func (f *inflater) need(n uint) error {
	for f.nbits < n {
		b, err := f.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		f.bits |= uint32(b) << f.nbits
		f.nbits += 8
	}
	return nil
}

func (f *inflater) getBits(n uint) (int, error) {
	if err := f.need(n); err != nil {
		return 0, err
	}
	v := int(f.bits & (1<<n - 1))
	f.bits >>= n
	f.nbits -= n
	return v, nil
}

// decode reads one symbol, a bit at a time (codes are sent MSB first).
func (f *inflater) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := f.getBits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		count := int(h.count[l])
		if code-first < count {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, errCorrupt
}

var (
	lenBase   = [...]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra  = [...]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase  = [...]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [...]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	clOrder   = [...]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

	fixedLit, fixedDist *huffman
)

func init() {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	fixedLit, _ = newHuffman(l[:])
	var d [30]uint8
	for i := range d {
		d[i] = 5
	}
	fixedDist, _ = newHuffman(d[:])
}

func (f *inflater) emit(b byte) {
	f.window[f.wpos] = b
	f.wpos = (f.wpos + 1) & (len(f.window) - 1)
	if f.wpos == 0 {
		f.wfull = true
	}
	f.out = append(f.out, b)
}

// Read returns decoded data, decoding until p can be filled or the input
// has nothing more buffered.
func (f *inflater) Read(p []byte) (int, error) {
	for len(f.out) < len(p) && f.err == nil {
		if len(f.out) > 0 && f.r.Buffered() == 0 {
			break // decoding on would wait for the network
		}
		f.err = f.step()
	}
	if len(f.out) == 0 && f.err != nil {
		return 0, f.err
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	if len(f.out) == 0 {
		f.out = f.out[:0:0]
	}
	return n, nil
}

// step decodes one block header, stored byte or Huffman symbol.
func (f *inflater) step() error {
	if !f.inBlock {
		if f.final {
			return io.EOF
		}
		return f.blockHeader()
	}
	if f.isStored {
		b, err := f.r.ReadByte()
		if err != nil {
			return noEOF(err)
		}
		f.emit(b)
		if f.stored--; f.stored == 0 {
			f.inBlock = false
		}
		return nil
	}
	sym, err := f.decode(f.lit)
	switch {
	case err != nil:
		return noEOF(err)
	case sym < 256:
		f.emit(byte(sym))
		return nil
	case sym == 256:
		f.inBlock = false
		return nil
	case sym > 285:
		return errCorrupt
	}
	sym -= 257
	extra, err := f.getBits(uint(lenExtra[sym]))
	if err != nil {
		return noEOF(err)
	}
	length := int(lenBase[sym]) + extra
	dsym, err := f.decode(f.dist)
	if err != nil || dsym >= 30 {
		return corrupt(err)
	}
	if extra, err = f.getBits(uint(distExtra[dsym])); err != nil {
		return noEOF(err)
	}
	dist := int(distBase[dsym]) + extra
	if !f.wfull && dist > f.wpos {
		return errCorrupt
	}
	for range length {
		f.emit(f.window[(f.wpos-dist)&(len(f.window)-1)])
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func corrupt(err error) error {
	if err != nil {
		return noEOF(err)
	}
	return errCorrupt
}

func (f *inflater) blockHeader() error {
	hdr, err := f.getBits(3)
	if err != nil {
		return err // io.EOF here is a clean end between blocks
	}
	f.final = hdr&1 == 1
	switch hdr >> 1 {
	case 0:
		f.bits, f.nbits = 0, 0 // to a byte boundary
		var b [4]byte
		if _, err := io.ReadFull(f.r, b[:]); err != nil {
			return noEOF(err)
		}
		n := int(b[0]) | int(b[1])<<8
		if n != ^(int(b[2])|int(b[3])<<8)&0xffff {
			return errCorrupt
		}
		f.isStored, f.stored, f.inBlock = true, n, n > 0
	case 1:
		f.isStored, f.lit, f.dist, f.inBlock = false, fixedLit, fixedDist, true
	case 2:
		f.isStored, f.inBlock = false, true
		return f.dynamicTrees()
	default:
		return errCorrupt
	}
	return nil
}

func (f *inflater) dynamicTrees() error {
	var v [3]int
	for i, n := range []uint{5, 5, 4} {
		x, err := f.getBits(n)
		if err != nil {
			return noEOF(err)
		}
		v[i] = x
	}
	nlen, ndist, ncode := v[0]+257, v[1]+1, v[2]+4
	if nlen > 286 || ndist > 30 {
		return errCorrupt
	}
	var cl [19]uint8
	for i := range ncode {
		x, err := f.getBits(3)
		if err != nil {
			return noEOF(err)
		}
		cl[clOrder[i]] = uint8(x)
	}
	clh, err := newHuffman(cl[:])
	if err != nil {
		return err
	}
	lengths := make([]uint8, nlen+ndist)
	for i := 0; i < len(lengths); {
		sym, err := f.decode(clh)
		if err != nil {
			return noEOF(err)
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return errCorrupt
			}
			val = lengths[i-1]
			rep, err = f.getBits(2)
			rep += 3
		case 17:
			rep, err = f.getBits(3)
			rep += 3
		default:
			rep, err = f.getBits(7)
			rep += 11
		}
		if err != nil {
			return noEOF(err)
		}
		if i+rep > len(lengths) {
			return errCorrupt
		}
		for range rep {
			lengths[i] = val
			i++
		}
	}
	if lengths[256] == 0 {
		return errCorrupt // no end-of-block code
	}
	if f.lit, err = newHuffman(lengths[:nlen]); err != nil {
		return err
	}
	f.dist, err = newHuffman(lengths[nlen:])
	return err
}
