package imapd

import (
	"bufio"
	"compress/flate"
	"strings"
)

// cmdCompress turns on COMPRESS=DEFLATE (RFC 4978): raw DEFLATE both ways
// from just after the tagged OK. Replies are sync-flushed with every
// flush; client data is decoded by inflater, which, unlike
// compress/flate, hands out data as soon as it is decoded.
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
	// Level 1: replies are mostly small and CPU is shared by every session.
	zw, _ := flate.NewWriter(&deadlineWriter{nc: c.nc, w: c.stream}, flate.BestSpeed)
	c.br = bufio.NewReaderSize(newInflater(&deadlineReader{c: c, r: c.stream}), readBufSize)
	c.release()
	c.zw = zw
	c.wdst = zw
	c.bw = bufio.NewWriterSize(zw, writeBufSize)
	return nil
}
