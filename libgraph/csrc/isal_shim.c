/* A layout-independent face of ISA-L's streaming inflate for libgraph's gzip decoder.
 * Rust never sees `struct inflate_state`: it holds an opaque pointer from ls_isal_new.
 *
 * libisal is opened with dlopen on first use, not linked: a process that never inflates
 * a layer (every `longshore` command but pull and load, and every container's monitor)
 * then neither maps it nor pays for its relocations (20 KiB of private memory each). */
#include <dlfcn.h>
#include <isa-l/igzip_lib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

static void (*p_inflate_init)(struct inflate_state *);
static void (*p_inflate_reset)(struct inflate_state *);
static int (*p_inflate)(struct inflate_state *);
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;

static void load(void)
{
	void *h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return;
	p_inflate_init = (void (*)(struct inflate_state *))dlsym(h, "isal_inflate_init");
	p_inflate_reset = (void (*)(struct inflate_state *))dlsym(h, "isal_inflate_reset");
	p_inflate = (int (*)(struct inflate_state *))dlsym(h, "isal_inflate");
	loaded = p_inflate_init != NULL && p_inflate_reset != NULL && p_inflate != NULL;
}

/* 1 when libisal could be opened (the Rust side falls back to zlib-rs otherwise). */
int ls_isal_available(void)
{
	pthread_once(&once, load);
	return loaded;
}

void *ls_isal_new(void)
{
	if (!ls_isal_available())
		return NULL;
	struct inflate_state *s = malloc(sizeof(*s));
	if (s == NULL)
		return NULL;
	p_inflate_init(s);
	s->crc_flag = ISAL_GZIP; /* parse the gzip header, verify CRC32 and ISIZE */
	return s;
}

void ls_isal_reset(void *p)
{
	struct inflate_state *s = p;
	p_inflate_reset(s);
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
	int r = p_inflate(s);
	*consumed = in_len - s->avail_in;
	*produced = out_len - s->avail_out;
	*finished = s->block_state == ISAL_BLOCK_FINISH;
	return r;
}

void ls_isal_free(void *p)
{
	free(p);
}
