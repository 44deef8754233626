/* A layout-independent face of ISA-L's streaming inflate for libgraph's gzip decoder.
 * Rust never sees `struct inflate_state`: it holds an opaque pointer from ls_isal_new. */
#include <isa-l/igzip_lib.h>
#include <stdint.h>
#include <stdlib.h>

void *ls_isal_new(void)
{
	struct inflate_state *s = malloc(sizeof(*s));
	if (s == NULL)
		return NULL;
	isal_inflate_init(s);
	s->crc_flag = ISAL_GZIP; /* parse the gzip header, verify CRC32 and ISIZE */
	return s;
}

void ls_isal_reset(void *p)
{
	struct inflate_state *s = p;
	isal_inflate_reset(s);
	s->crc_flag = ISAL_GZIP;
}

/* One step: consumes from `in`, produces into `out`; *finished is 1 once the member's
 * trailer has been verified. Returns ISA-L's status (negative on corrupt data). */
int ls_isal_inflate(void *p, const uint8_t *in, uint32_t in_len, uint32_t *consumed,
		    uint8_t *out, uint32_t out_len, uint32_t *produced, int *finished)
{
	struct inflate_state *s = p;
	s->next_in = (uint8_t *)in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	int r = isal_inflate(s);
	*consumed = in_len - s->avail_in;
	*produced = out_len - s->avail_out;
	*finished = s->block_state == ISAL_BLOCK_FINISH;
	return r;
}

void ls_isal_free(void *p)
{
	free(p);
}
