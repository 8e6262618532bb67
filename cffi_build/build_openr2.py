"""cffi build for openr2 1.3.3 (Debian's libopenr2-dev) -> simulators._openr2.

openr2 is only an interoperability peer for the simulator (our R2 stack is our own).
Release 1.3.3 has no pluggable I/O: it opens DAHDI channels, drives them with ioctl(),
read() and write() of 160-byte A-law blocks, and times everything with gettimeofday().
So the static archive is linked into this module with those calls wrapped:

* `--wrap=ioctl,read,write`: file descriptors from SIM_FD_BASE up are simulated CAS
  channels (struct sim_chan below): DAHDI_SETTXBITS/GETRXBITS carry the ABCD bits,
  DAHDI_GETEVENT hands out queued BITSCHANGED events, DAHDI_IOMUX reports a pending
  event, one received block per tick (READ) and room for one sent block (WRITE); the
  set-up ioctls of openr2_chan_new_from_fd are answered as a CAS channel would.
  Any other descriptor goes to the real call.
* `--wrap=gettimeofday`: openr2's clock is sim_now, set by the caller every tick, so
  its timers run on simulated time.
* `--wrap=stdout,stderr`: the archive is position-independent executable code that
  reaches these two libc variables directly; pointing them at variables of this module
  lets it link into a shared object (and keeps its default loggers quiet on ours).

Call-management callbacks and log lines are queued in C and read by
simulators/openr2_peer.py, the only importer of the result, after each call into openr2.

Run from the repository root: `python cffi_build/build_openr2.py` builds the extension
in place (simulators/_openr2*.so). Not listed in setup.py's cffi_modules: the peer is a
test and simulator tool, and the build needs libopenr2-dev's static archive.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

import cffi


def _archive() -> str:
    triplet = sysconfig.get_config_var("MULTIARCH")
    if not triplet:
        try:
            triplet = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                                     text=True, check=False, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            triplet = ""
    for d in filter(None, [f"/usr/lib/{triplet}" if triplet else "", "/usr/lib", "/usr/local/lib"]):
        path = os.path.join(d, "libopenr2.a")
        if os.path.exists(path):
            return path
    raise SystemExit("libopenr2.a not found: install libopenr2-dev (with dahdi-source)")


CDEF = r"""
typedef struct openr2_context_s openr2_context_t;
typedef struct openr2_chan_s openr2_chan_t;

#define OR2_VAR_CHINA ...
#define OR2_VAR_ITU ...
#define OR2_VAR_MEXICO ...
#define OR2_VAR_BRAZIL ...
#define OR2_VAR_ARGENTINA ...

#define OR2_CALL_WITH_CHARGE ...
#define OR2_CALL_NO_CHARGE ...
#define OR2_CALL_SPECIAL ...

#define OR2_CAUSE_BUSY_NUMBER ...
#define OR2_CAUSE_NETWORK_CONGESTION ...
#define OR2_CAUSE_UNALLOCATED_NUMBER ...
#define OR2_CAUSE_OUT_OF_ORDER ...
#define OR2_CAUSE_UNSPECIFIED ...
#define OR2_CAUSE_NO_ANSWER ...
#define OR2_CAUSE_NORMAL_CLEARING ...
#define OR2_CAUSE_FORCED_RELEASE ...

#define OR2_CALLING_PARTY_CATEGORY_NATIONAL_SUBSCRIBER ...
#define OR2_CALLING_PARTY_CATEGORY_NATIONAL_PRIORITY_SUBSCRIBER ...
#define OR2_CALLING_PARTY_CATEGORY_INTERNATIONAL_SUBSCRIBER ...
#define OR2_CALLING_PARTY_CATEGORY_UNKNOWN ...

#define OR2_LOG_ALL ...
#define OR2_LOG_NOTHING ...

#define DAHDI_EVENT_BITSCHANGED ...
#define DAHDI_EVENT_ALARM ...
#define DAHDI_EVENT_NOALARM ...

#define HL_EV_INIT ...
#define HL_EV_OFFERED ...
#define HL_EV_ACCEPTED ...
#define HL_EV_ANSWERED ...
#define HL_EV_DISCONNECT ...
#define HL_EV_END ...
#define HL_EV_PROTOCOL_ERROR ...
#define HL_EV_OS_ERROR ...
#define HL_EV_IDLE ...
#define HL_EV_BLOCKED ...
#define HL_EV_ALARM ...
#define HL_EV_DNIS_DIGIT ...
#define HL_EV_ANI_DIGIT ...
#define HL_EV_BILLING ...

struct hl_event {
    int type;
    int channo;
    int value;              /* cause, mode, category, error, alarm, digit */
    char ani[64];
    char dnis[64];
};

openr2_context_t *hl_context_new(int variant, int max_ani, int max_dnis);
void openr2_context_delete(openr2_context_t *r2context);
void openr2_context_set_log_level(openr2_context_t *r2context, int level);
void openr2_context_set_ani_first(openr2_context_t *r2context, int ani_first);
void openr2_context_set_mf_back_timeout(openr2_context_t *r2context, int ms);
void openr2_context_set_immediate_accept(openr2_context_t *r2context, int immediate_accept);

openr2_chan_t *hl_chan_new(openr2_context_t *ctx, int slot, int channo);
void hl_chan_delete(openr2_chan_t *chan, int slot);
int openr2_chan_set_idle(openr2_chan_t *r2chan);
int openr2_chan_set_blocked(openr2_chan_t *r2chan);
int openr2_chan_handle_cas(openr2_chan_t *r2chan);
int openr2_chan_process_event(openr2_chan_t *r2chan);
int openr2_chan_make_call(openr2_chan_t *r2chan, const char *ani, const char *dnid, int category);
int openr2_chan_accept_call(openr2_chan_t *r2chan, int accept);
int openr2_chan_answer_call(openr2_chan_t *r2chan);
int openr2_chan_disconnect_call(openr2_chan_t *r2chan, int cause);
const char *openr2_chan_get_dnis(openr2_chan_t *r2chan);
const char *openr2_chan_get_ani(openr2_chan_t *r2chan);
const char *openr2_chan_get_r2_state_string(openr2_chan_t *r2chan);
const char *openr2_chan_get_mf_state_string(openr2_chan_t *r2chan);
const char *openr2_chan_get_call_state_string(openr2_chan_t *r2chan);
void openr2_chan_set_log_level(openr2_chan_t *r2chan, int level);
const char *openr2_get_version(void);

/* the simulated channels */
void hl_set_time(long long ms);
int hl_set_rxbits(int slot, int bits);     /* the host's bits; queues BITSCHANGED on change */
int hl_get_txbits(int slot);
int hl_push_event(int slot, int event);
int hl_put_rx(int slot, const unsigned char *block, int len);
int hl_take_tx(int slot, unsigned char *block, int len);   /* bytes written this tick */
int hl_fd(int slot);

int hl_next_event(struct hl_event *out);
int hl_next_log(char *out, int len);
"""

SOURCE = r"""
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>
#include <dahdi/user.h>
#include <openr2.h>

#define SIM_FD_BASE 20000
#define SIM_MAX 64
#define SIM_BLOCK 160
#define EVQ 256
#define LOGQ 512
#define LOGLEN 240

enum { HL_EV_INIT = 1, HL_EV_OFFERED, HL_EV_ACCEPTED, HL_EV_ANSWERED, HL_EV_DISCONNECT,
       HL_EV_END, HL_EV_PROTOCOL_ERROR, HL_EV_OS_ERROR, HL_EV_IDLE, HL_EV_BLOCKED,
       HL_EV_ALARM, HL_EV_DNIS_DIGIT, HL_EV_ANI_DIGIT, HL_EV_BILLING };

struct hl_event {
    int type;
    int channo;
    int value;
    char ani[64];
    char dnis[64];
};

struct sim_chan {
    int used;
    int channo;
    int rxbits;
    int txbits;
    int events[16];
    int nev;
    unsigned char rx[SIM_BLOCK];
    int rx_len;
    unsigned char tx[SIM_BLOCK];
    int tx_len;
};

static struct sim_chan sim[SIM_MAX];
static struct timeval sim_now;
static struct hl_event evq[EVQ];
static int ev_head, ev_count;
static char logq[LOGQ][LOGLEN];
static int log_head, log_count;

/* ---- the wrapped libc variables and calls ---- */
extern FILE *__real_stdout;
extern FILE *__real_stderr;
__attribute__((visibility("hidden"))) FILE *__wrap_stdout;
__attribute__((visibility("hidden"))) FILE *__wrap_stderr;

__attribute__((constructor)) static void hl_init_streams(void)
{
    __wrap_stdout = __real_stdout;
    __wrap_stderr = __real_stderr;
}

static struct sim_chan *sim_of(int fd)
{
    int i = fd - SIM_FD_BASE;
    if (i < 0 || i >= SIM_MAX || !sim[i].used)
        return NULL;
    return &sim[i];
}

extern int __real_ioctl(int fd, unsigned long request, ...);
extern ssize_t __real_read(int fd, void *buf, size_t count);
extern ssize_t __real_write(int fd, const void *buf, size_t count);

__attribute__((visibility("hidden"))) int __wrap_ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    void *arg;
    struct sim_chan *c;
    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    c = sim_of(fd);
    if (c == NULL)
        return __real_ioctl(fd, request, arg);
    switch (request) {
    case DAHDI_CHANNO:
        *(int *) arg = c->channo;
        return 0;
    case DAHDI_GET_PARAMS: {
        struct dahdi_params *p = (struct dahdi_params *) arg;
        memset(p, 0, sizeof(*p));
        p->channo = c->channo;
        p->chanpos = c->channo;
        p->sigtype = DAHDI_SIG_CAS;
        p->sigcap = DAHDI_SIG_CAS;
        p->rxbits = c->rxbits;
        p->txbits = c->txbits;
        p->curlaw = DAHDI_LAW_ALAW;
        return 0;
    }
    case DAHDI_GET_BUFINFO: {
        struct dahdi_bufferinfo *b = (struct dahdi_bufferinfo *) arg;
        memset(b, 0, sizeof(*b));
        b->bufsize = SIM_BLOCK;
        b->numbufs = 4;
        return 0;
    }
    case DAHDI_SET_BUFINFO:
    case DAHDI_SETGAINS:
    case DAHDI_SETLAW:
    case DAHDI_ECHOCANCEL:
    case DAHDI_FLUSH:
    case DAHDI_SETLINEAR:
        return 0;
    case DAHDI_SETTXBITS:
        c->txbits = *(int *) arg & 0xF;
        return 0;
    case DAHDI_GETRXBITS:
        *(int *) arg = c->rxbits;
        return 0;
    case DAHDI_GETEVENT:
        if (c->nev > 0) {
            *(int *) arg = c->events[0];
            memmove(c->events, c->events + 1, (size_t) (c->nev - 1) * sizeof(int));
            c->nev--;
        } else {
            *(int *) arg = 0;
        }
        return 0;
    case DAHDI_IOMUX: {
        int want = *(int *) arg;
        int got = 0;
        if ((want & DAHDI_IOMUX_SIGEVENT) && c->nev > 0)
            got |= DAHDI_IOMUX_SIGEVENT;
        if ((want & DAHDI_IOMUX_READ) && c->rx_len > 0)
            got |= DAHDI_IOMUX_READ;
        if ((want & DAHDI_IOMUX_WRITE) && c->tx_len == 0)
            got |= DAHDI_IOMUX_WRITE;
        *(int *) arg = got;
        return 0;
    }
    default:
        errno = EINVAL;
        return -1;
    }
}

__attribute__((visibility("hidden"))) ssize_t __wrap_read(int fd, void *buf, size_t count)
{
    struct sim_chan *c = sim_of(fd);
    size_t n;
    if (c == NULL)
        return __real_read(fd, buf, count);
    if (c->rx_len == 0) {
        errno = EAGAIN;
        return -1;
    }
    n = count < (size_t) c->rx_len ? count : (size_t) c->rx_len;
    memcpy(buf, c->rx, n);
    c->rx_len = 0;
    return (ssize_t) n;
}

__attribute__((visibility("hidden"))) ssize_t __wrap_write(int fd, const void *buf, size_t count)
{
    struct sim_chan *c = sim_of(fd);
    size_t n;
    if (c == NULL)
        return __real_write(fd, buf, count);
    n = count < SIM_BLOCK ? count : SIM_BLOCK;
    memcpy(c->tx, buf, n);
    c->tx_len = (int) n;
    return (ssize_t) count;
}

__attribute__((visibility("hidden"))) int __wrap_gettimeofday(struct timeval *tv, void *tz)
{
    (void) tz;
    if (tv != NULL)
        *tv = sim_now;
    return 0;
}

/* ---- queues read by Python ---- */
static struct hl_event *ev_push(int type, openr2_chan_t *chan, int value)
{
    struct hl_event *e;
    if (ev_count == EVQ)
        return NULL;
    e = &evq[(ev_head + ev_count) % EVQ];
    ev_count++;
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->channo = chan ? openr2_chan_get_number(chan) : 0;
    e->value = value;
    return e;
}

static int hl_next_event(struct hl_event *out)
{
    if (ev_count == 0)
        return 0;
    *out = evq[ev_head];
    ev_head = (ev_head + 1) % EVQ;
    ev_count--;
    return 1;
}

static void log_push(const char *prefix, const char *fmt, va_list ap)
{
    char *slot;
    int n;
    if (log_count == LOGQ) {
        log_head = (log_head + 1) % LOGQ;
        log_count--;
    }
    slot = logq[(log_head + log_count) % LOGQ];
    n = snprintf(slot, LOGLEN, "%s", prefix);
    if (n < 0 || n >= LOGLEN)
        n = 0;
    vsnprintf(slot + n, (size_t) (LOGLEN - n), fmt, ap);
    log_count++;
}

static int hl_next_log(char *out, int len)
{
    if (log_count == 0)
        return 0;
    snprintf(out, (size_t) len, "%s", logq[log_head]);
    log_head = (log_head + 1) % LOGQ;
    log_count--;
    return 1;
}

static void on_context_log(openr2_context_t *ctx, openr2_log_level_t level, const char *fmt, va_list ap)
{
    (void) ctx; (void) level;
    log_push("[context] ", fmt, ap);
}

static void on_chan_log(openr2_chan_t *chan, openr2_log_level_t level, const char *fmt, va_list ap)
{
    char prefix[32];
    (void) level;
    snprintf(prefix, sizeof(prefix), "[chan %d] ", openr2_chan_get_number(chan));
    log_push(prefix, fmt, ap);
}

static void on_call_init(openr2_chan_t *chan) { ev_push(HL_EV_INIT, chan, 0); }

static void on_call_offered(openr2_chan_t *chan, const char *ani, const char *dnis,
                            openr2_calling_party_category_t category)
{
    struct hl_event *e = ev_push(HL_EV_OFFERED, chan, (int) category);
    if (e) {
        snprintf(e->ani, sizeof(e->ani), "%s", ani ? ani : "");
        snprintf(e->dnis, sizeof(e->dnis), "%s", dnis ? dnis : "");
    }
}

static void on_call_accepted(openr2_chan_t *chan, openr2_call_mode_t mode) { ev_push(HL_EV_ACCEPTED, chan, (int) mode); }
static void on_call_answered(openr2_chan_t *chan) { ev_push(HL_EV_ANSWERED, chan, 0); }
static void on_call_disconnect(openr2_chan_t *chan, openr2_call_disconnect_cause_t cause) { ev_push(HL_EV_DISCONNECT, chan, (int) cause); }
static void on_call_end(openr2_chan_t *chan) { ev_push(HL_EV_END, chan, 0); }
static void on_call_read(openr2_chan_t *chan, const unsigned char *buf, int len) { (void) chan; (void) buf; (void) len; }
static void on_hardware_alarm(openr2_chan_t *chan, int alarm) { ev_push(HL_EV_ALARM, chan, alarm); }
static void on_os_error(openr2_chan_t *chan, int err) { ev_push(HL_EV_OS_ERROR, chan, err); }
static void on_protocol_error(openr2_chan_t *chan, openr2_protocol_error_t error) { ev_push(HL_EV_PROTOCOL_ERROR, chan, (int) error); }
static void on_line_blocked(openr2_chan_t *chan) { ev_push(HL_EV_BLOCKED, chan, 0); }
static void on_line_idle(openr2_chan_t *chan) { ev_push(HL_EV_IDLE, chan, 0); }
static int on_dnis_digit(openr2_chan_t *chan, char digit) { ev_push(HL_EV_DNIS_DIGIT, chan, digit); return 1; }
static void on_ani_digit(openr2_chan_t *chan, char digit) { ev_push(HL_EV_ANI_DIGIT, chan, digit); }
static void on_billing(openr2_chan_t *chan) { ev_push(HL_EV_BILLING, chan, 0); }

static openr2_event_interface_t hl_events = {
    .on_call_init = on_call_init,
    .on_call_offered = on_call_offered,
    .on_call_accepted = on_call_accepted,
    .on_call_answered = on_call_answered,
    .on_call_disconnect = on_call_disconnect,
    .on_call_end = on_call_end,
    .on_call_read = on_call_read,
    .on_hardware_alarm = on_hardware_alarm,
    .on_os_error = on_os_error,
    .on_protocol_error = on_protocol_error,
    .on_line_blocked = on_line_blocked,
    .on_line_idle = on_line_idle,
    .on_context_log = on_context_log,
    .on_dnis_digit_received = on_dnis_digit,
    .on_ani_digit_received = on_ani_digit,
    .on_billing_pulse_received = on_billing,
};

static openr2_context_t *hl_context_new(int variant, int max_ani, int max_dnis)
{
    return openr2_context_new(NULL, &hl_events, NULL, (openr2_variant_t) variant, max_ani, max_dnis);
}

static openr2_chan_t *hl_chan_new(openr2_context_t *ctx, int slot, int channo)
{
    openr2_chan_t *chan;
    if (slot < 0 || slot >= SIM_MAX || sim[slot].used)
        return NULL;
    memset(&sim[slot], 0, sizeof(sim[slot]));
    sim[slot].used = 1;
    sim[slot].channo = channo;
    sim[slot].rxbits = 0x9;
    chan = openr2_chan_new_from_fd(ctx, SIM_FD_BASE + slot, NULL, NULL);
    if (chan == NULL) {
        sim[slot].used = 0;
        return NULL;
    }
    openr2_chan_set_logging_func(chan, on_chan_log);
    return chan;
}

static void hl_chan_delete(openr2_chan_t *chan, int slot)
{
    if (chan != NULL)
        openr2_chan_delete(chan);
    if (slot >= 0 && slot < SIM_MAX)
        sim[slot].used = 0;
}

static void hl_set_time(long long ms)
{
    sim_now.tv_sec = (time_t) (ms / 1000);
    sim_now.tv_usec = (suseconds_t) ((ms % 1000) * 1000);
}

static int hl_push_event(int slot, int event)
{
    struct sim_chan *c = sim_of(SIM_FD_BASE + slot);
    if (c == NULL || c->nev == 16)
        return -1;
    c->events[c->nev++] = event;
    return 0;
}

static int hl_set_rxbits(int slot, int bits)
{
    struct sim_chan *c = sim_of(SIM_FD_BASE + slot);
    if (c == NULL)
        return -1;
    bits &= 0xF;
    if (bits == c->rxbits)
        return 0;
    c->rxbits = bits;
    return hl_push_event(slot, DAHDI_EVENT_BITSCHANGED) == 0 ? 1 : -1;
}

static int hl_get_txbits(int slot)
{
    struct sim_chan *c = sim_of(SIM_FD_BASE + slot);
    return c == NULL ? -1 : c->txbits;
}

static int hl_put_rx(int slot, const unsigned char *block, int len)
{
    struct sim_chan *c = sim_of(SIM_FD_BASE + slot);
    if (c == NULL || len < 0 || len > SIM_BLOCK)
        return -1;
    memcpy(c->rx, block, (size_t) len);
    c->rx_len = len;
    return 0;
}

static int hl_take_tx(int slot, unsigned char *block, int len)
{
    struct sim_chan *c = sim_of(SIM_FD_BASE + slot);
    int n;
    if (c == NULL)
        return -1;
    n = c->tx_len < len ? c->tx_len : len;
    memcpy(block, c->tx, (size_t) n);
    c->tx_len = 0;
    return n;
}

static int hl_fd(int slot)
{
    return SIM_FD_BASE + slot;
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "simulators._openr2",
    SOURCE,
    include_dirs=["/usr/include"],
    extra_objects=[_archive()],
    libraries=["m", "pthread"],
    extra_compile_args=["-O2", "-Wno-unused-function"],
    extra_link_args=["-Wl,--wrap=ioctl,--wrap=read,--wrap=write,--wrap=gettimeofday",
                     "-Wl,--wrap=stdout,--wrap=stderr", "-Wl,--exclude-libs,ALL"],
)


def build_in_place() -> str:
    """Compile under build/ and copy the extension into simulators/."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmpdir = os.path.join(root, "build", "cffi-openr2")
    so = ffibuilder.compile(tmpdir=tmpdir, verbose=False)
    dest = os.path.join(root, "simulators", os.path.basename(so))
    shutil.copyfile(so, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
    return dest


if __name__ == "__main__":
    print(build_in_place())
