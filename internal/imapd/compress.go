package imapd

import (
	"bufio"
	"compress/flate"
	"strings"
)

// cmdCompress turns on COMPRESS=DEFLATE (RFC 4978): raw deflate both
// ways from just after the tagged OK, flushed (sync flush) with every
// response.
func (c *conn) cmdCompress(tag string, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	alg, err := p.atom()
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	if !strings.EqualFold(alg, "DEFLATE") {
		return badf("Unsupported compression algorithm")
	}
	if c.zw != nil {
		return nof("COMPRESSIONACTIVE", "Compression already active")
	}
	if c.br.Buffered() > 0 {
		return badf("Data pipelined after COMPRESS")
	}
	c.writeLine(tag + " OK DEFLATE active")
	if err := c.flush(); err != nil {
		return err
	}
	zw, _ := flate.NewWriter(&deadlineWriter{nc: c.nc, w: c.stream}, flate.DefaultCompression)
	c.zw = zw
	c.br = bufio.NewReaderSize(flate.NewReader(&deadlineReader{c: c, r: c.stream}), 16<<10)
	c.bw = bufio.NewWriterSize(zw, 16<<10)
	return nil
}
