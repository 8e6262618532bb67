"""cffi build for libpri 1.6 (Debian's libpri-dev) -> drivers.native._pri.

API mode against /usr/include/libpri.h. Only drivers/native/libpri.py imports the result.

libpri is linked in statically (Debian ships /usr/lib/libpri.a) for two reasons that
the shared library cannot serve:

* Time. libpri schedules every Q.921/Q.931 timer with gettimeofday() and runs them with
  pri_schedule_run(), which reads gettimeofday() again (pri_schedule_run_tv is declared
  in the 1.6 header but not implemented). `--wrap=gettimeofday` points libpri at a
  per-thread clock that the binding sets from the caller's time before every entry, so
  timers follow the caller's clock exactly (simulated time in tests and in ctisim).
* Call lifetime. libpri frees a call record (q931_call) on its own, e.g. after RELEASE
  COMPLETE, and says so only indirectly. `--wrap=free` lets this module notice when a
  call record the binding hands out is freed, so a stale handle is refused instead of
  touching freed memory. The registry maps record address -> serial number, so a new
  call that reuses the address is not mistaken for the old one.

The archive's symbols stay private to this module (--exclude-libs).

Run from the repository root: `python cffi_build/build_pri.py` builds the extension in
place (drivers/native/_pri*.so).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

import cffi


def _multiarch() -> str | None:
    triplet = sysconfig.get_config_var("MULTIARCH")
    if triplet:
        return triplet
    try:
        out = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True,
                             check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or None


def _libpri_archive() -> str:
    """Debian installs libpri outside the multiarch directory (/usr/lib/libpri.a)."""
    dirs = ["/usr/lib"]
    triplet = _multiarch()
    if triplet:
        dirs.append(os.path.join("/usr/lib", triplet))
    dirs.append("/usr/local/lib")
    for d in dirs:
        path = os.path.join(d, "libpri.a")
        if os.path.exists(path):
            return path
    raise SystemExit("libpri.a not found: install libpri-dev")


CDEF = r"""
#define PRI_NETWORK ...
#define PRI_CPE ...

#define PRI_SWITCH_UNKNOWN ...
#define PRI_SWITCH_NI2 ...
#define PRI_SWITCH_DMS100 ...
#define PRI_SWITCH_LUCENT5E ...
#define PRI_SWITCH_ATT4ESS ...
#define PRI_SWITCH_EUROISDN_E1 ...
#define PRI_SWITCH_EUROISDN_T1 ...
#define PRI_SWITCH_NI1 ...
#define PRI_SWITCH_GR303_EOC ...
#define PRI_SWITCH_GR303_TMC ...
#define PRI_SWITCH_QSIG ...

#define PRI_EVENT_DCHAN_UP ...
#define PRI_EVENT_DCHAN_DOWN ...
#define PRI_EVENT_RESTART ...
#define PRI_EVENT_CONFIG_ERR ...
#define PRI_EVENT_RING ...
#define PRI_EVENT_HANGUP ...
#define PRI_EVENT_RINGING ...
#define PRI_EVENT_ANSWER ...
#define PRI_EVENT_HANGUP_ACK ...
#define PRI_EVENT_RESTART_ACK ...
#define PRI_EVENT_FACILITY ...
#define PRI_EVENT_INFO_RECEIVED ...
#define PRI_EVENT_PROCEEDING ...
#define PRI_EVENT_SETUP_ACK ...
#define PRI_EVENT_HANGUP_REQ ...
#define PRI_EVENT_NOTIFY ...
#define PRI_EVENT_PROGRESS ...
#define PRI_EVENT_KEYPAD_DIGIT ...
#define PRI_EVENT_SERVICE ...
#define PRI_EVENT_SERVICE_ACK ...
#define PRI_EVENT_HOLD ...
#define PRI_EVENT_HOLD_ACK ...
#define PRI_EVENT_HOLD_REJ ...
#define PRI_EVENT_RETRIEVE ...
#define PRI_EVENT_RETRIEVE_ACK ...
#define PRI_EVENT_RETRIEVE_REJ ...
#define PRI_EVENT_CONNECT_ACK ...

#define PRI_PROG_INBAND_AVAILABLE ...
#define PRI_TRANS_CAP_SPEECH ...
#define PRI_TRANS_CAP_DIGITAL ...
#define PRI_TRANS_CAP_RESTRICTED_DIGITAL ...
#define PRI_TRANS_CAP_3_1K_AUDIO ...
#define PRI_TRANS_CAP_7K_AUDIO ...
#define PRI_TRANS_CAP_VIDEO ...
#define PRI_LAYER_1_ULAW ...
#define PRI_LAYER_1_ALAW ...

#define PRI_DEBUG_Q921_RAW ...
#define PRI_DEBUG_Q921_DUMP ...
#define PRI_DEBUG_Q921_STATE ...
#define PRI_DEBUG_Q931_DUMP ...
#define PRI_DEBUG_Q931_STATE ...
#define PRI_DEBUG_Q931_ANOMALY ...

struct pri;
struct pri_sr;
typedef struct q931_call q931_call;
typedef int (*pri_io_cb)(struct pri *pri, void *buf, int buflen);

typedef struct { int e; int channel; ...; } pri_event_restart;
typedef struct { int e; int channel; int cref; int progress; int progressmask;
                 q931_call *call; ...; } pri_event_ringing;
typedef struct { int e; int channel; int cref; int progress; int progressmask;
                 q931_call *call; ...; } pri_event_answer;
typedef struct {
    int e;
    int channel;
    int callingpres;
    int callingplanani;
    int callingplan;
    char callingani[256];
    char callingnum[256];
    char callingname[256];
    int calledplan;
    char callednum[256];
    char redirectingnum[256];
    char redirectingname[256];
    int redirectingreason;
    int callingplanrdnis;
    int flexible;
    int cref;
    int ctype;
    int layer1;
    int complete;
    q931_call *call;
    int progress;
    int progressmask;
    char keypad_digits[64];
    ...;
} pri_event_ring;
typedef struct { int e; int channel; int cause; int cref; q931_call *call; long aoc_units;
                 ...; } pri_event_hangup;
typedef struct { int e; int channel; ...; } pri_event_restart_ack;
typedef struct { int e; int channel; int cref; int progress; int progressmask; int cause;
                 q931_call *call; ...; } pri_event_proceeding;
typedef struct { int e; int channel; q931_call *call; int progressmask; ...; } pri_event_setup_ack;
typedef struct { int e; int channel; int info; q931_call *call; ...; } pri_event_notify;
typedef struct { int e; int channel; q931_call *call; char digits[64]; ...; } pri_event_keypad_digit;
typedef struct { int e; int channel; int changestatus; ...; } pri_event_service;
typedef struct { int e; int channel; int changestatus; ...; } pri_event_service_ack;
typedef struct { int e; char err[256]; ...; } pri_event_error;
struct pri_event_connect_ack { int e; int channel; q931_call *call; ...; };

typedef union {
    int e;
    pri_event_restart restart;
    pri_event_error err;
    pri_event_ring ring;
    pri_event_hangup hangup;
    pri_event_ringing ringing;
    pri_event_answer answer;
    pri_event_restart_ack restartack;
    pri_event_proceeding proceeding;
    pri_event_setup_ack setup_ack;
    pri_event_notify notify;
    pri_event_keypad_digit digit;
    pri_event_service service;
    pri_event_service_ack service_ack;
    struct pri_event_connect_ack connect_ack;
    ...;
} pri_event;

struct pri *pri_new_cb(int fd, int nodetype, int switchtype, pri_io_cb io_read,
                       pri_io_cb io_write, void *userdata);
void *pri_get_userdata(struct pri *pri);
void pri_set_debug(struct pri *pri, int debug);
pri_event *pri_check_event(struct pri *pri);
struct timeval *pri_schedule_next(struct pri *pri);
pri_event *pri_schedule_run(struct pri *pri);
char *pri_event2str(int id);
char *pri_switch2str(int id);
char *pri_cause2str(int cause);
char *pri_dump_info_str(struct pri *pri);
void pri_set_overlapdial(struct pri *pri, int state);
int pri_set_service_message_support(struct pri *pri, int supportflag);
void pri_set_inbanddisconnect(struct pri *pri, unsigned int enable);
void pri_hangup_fix_enable(struct pri *ctrl, int enable);
int pri_set_timer(struct pri *pri, int timer, int value);
int pri_get_timer(struct pri *pri, int timer);
int pri_timer2idx(const char *timer_name);
const char *pri_get_version(void);

q931_call *pri_new_call(struct pri *pri);
int pri_get_crv(struct pri *pri, q931_call *call, int *callmode);
struct pri_sr *pri_sr_new(void);
void pri_sr_free(struct pri_sr *sr);
int pri_sr_set_channel(struct pri_sr *sr, int channel, int exclusive, int nonisdn);
int pri_sr_set_bearer(struct pri_sr *sr, int transmode, int userl1);
int pri_sr_set_called(struct pri_sr *sr, char *called, int calledplan, int complete);
int pri_sr_set_caller(struct pri_sr *sr, char *caller, char *callername, int callerplan,
                      int callerpres);
int pri_sr_set_redirecting(struct pri_sr *sr, char *num, int plan, int pres, int reason);
int pri_setup(struct pri *pri, q931_call *call, struct pri_sr *req);
int pri_proceeding(struct pri *pri, q931_call *c, int channel, int info);
int pri_progress(struct pri *pri, q931_call *c, int channel, int info);
int pri_acknowledge(struct pri *pri, q931_call *call, int channel, int info);
int pri_need_more_info(struct pri *pri, q931_call *call, int channel, int nonisdn);
int pri_answer(struct pri *pri, q931_call *call, int channel, int nonisdn);
int pri_information(struct pri *pri, q931_call *call, char digit);
int pri_keypad_facility(struct pri *pri, q931_call *call, const char *digits);
int pri_hangup(struct pri *pri, q931_call *call, int cause);
void pri_destroycall(struct pri *pri, q931_call *call);
int pri_reset(struct pri *pri, int channel);
int pri_restart(struct pri *pri);
int pri_maintenance_service(struct pri *pri, int span, int channel, int changestatus);

void pri_set_message(void (*__pri_error)(struct pri *pri, char *));
void pri_set_error(void (*__pri_error)(struct pri *pri, char *));

extern "Python" int hl_pri_read(struct pri *pri, void *buf, int buflen);
extern "Python" int hl_pri_write(struct pri *pri, void *buf, int buflen);
extern "Python" void hl_pri_message(struct pri *pri, char *text);
extern "Python" void hl_pri_error(struct pri *pri, char *text);

void hl_set_now(long long sec, long usec);
int hl_next_timer(struct pri *pri, long long *sec, long *usec);
unsigned long long hl_track(void *p);
int hl_alive(void *p, unsigned long long serial);
int hl_tracked(void);
void hl_free_str(char *s);
"""

SOURCE = r"""
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/time.h>
#include <libpri.h>

/* ---- the caller's clock (see the module docstring) ---- */
static __thread struct timeval hl_now;

static void hl_set_now(long long sec, long usec)
{
    hl_now.tv_sec = (time_t) sec;
    hl_now.tv_usec = (suseconds_t) usec;
}

__attribute__((visibility("hidden"))) int __wrap_gettimeofday(struct timeval *tv, void *tz)
{
    (void) tz;
    if (tv != NULL)
        *tv = hl_now;
    return 0;
}

static int hl_next_timer(struct pri *pri, long long *sec, long *usec)
{
    struct timeval *tv = pri_schedule_next(pri);
    if (tv == NULL)
        return 0;
    *sec = (long long) tv->tv_sec;
    *usec = (long) tv->tv_usec;
    return 1;
}

/* ---- call records handed out to Python, forgotten when libpri frees them ---- */
extern void __real_free(void *p);

#define HL_BUCKETS 4096
struct hl_node {
    void *p;
    unsigned long long serial;
    struct hl_node *next;
};
static struct hl_node *hl_table[HL_BUCKETS];
static unsigned long long hl_serial;
static int hl_count;
static pthread_mutex_t hl_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned hl_bucket(const void *p)
{
    uint64_t x = (uint64_t) (uintptr_t) p;
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ull;
    return (unsigned) (x >> 52) & (HL_BUCKETS - 1);
}

static unsigned long long hl_track(void *p)
{
    unsigned b = hl_bucket(p);
    struct hl_node *n;
    unsigned long long serial;
    pthread_mutex_lock(&hl_lock);
    serial = ++hl_serial;
    for (n = hl_table[b]; n; n = n->next) {
        if (n->p == p) {
            n->serial = serial;
            pthread_mutex_unlock(&hl_lock);
            return serial;
        }
    }
    n = (struct hl_node *) malloc(sizeof(*n));
    if (n == NULL) {
        pthread_mutex_unlock(&hl_lock);
        return 0;
    }
    n->p = p;
    n->serial = serial;
    n->next = hl_table[b];
    hl_table[b] = n;
    hl_count++;
    pthread_mutex_unlock(&hl_lock);
    return serial;
}

static int hl_alive(void *p, unsigned long long serial)
{
    unsigned b = hl_bucket(p);
    struct hl_node *n;
    int alive = 0;
    pthread_mutex_lock(&hl_lock);
    for (n = hl_table[b]; n; n = n->next) {
        if (n->p == p) {
            alive = (n->serial == serial);
            break;
        }
    }
    pthread_mutex_unlock(&hl_lock);
    return alive;
}

static int hl_tracked(void)
{
    return hl_count;
}

__attribute__((visibility("hidden"))) void __wrap_free(void *p)
{
    if (p != NULL && hl_count > 0) {
        unsigned b = hl_bucket(p);
        struct hl_node **pp;
        struct hl_node *gone = NULL;
        pthread_mutex_lock(&hl_lock);
        for (pp = &hl_table[b]; *pp; pp = &(*pp)->next) {
            if ((*pp)->p == p) {
                gone = *pp;
                *pp = gone->next;
                hl_count--;
                break;
            }
        }
        pthread_mutex_unlock(&hl_lock);
        if (gone != NULL)
            __real_free(gone);
    }
    __real_free(p);
}

/* pri_dump_info_str returns malloc'd text. */
static void hl_free_str(char *s)
{
    free(s);
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "drivers.native._pri",
    SOURCE,
    include_dirs=["/usr/include"],
    extra_objects=[_libpri_archive()],
    extra_compile_args=["-O2", "-Wno-unused-function"],
    extra_link_args=["-Wl,--wrap=gettimeofday", "-Wl,--wrap=free",
                     "-Wl,--exclude-libs,ALL"],
)


def build_in_place() -> str:
    """Compile under build/ and copy the extension into drivers/native/."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmpdir = os.path.join(root, "build", "cffi")
    so = ffibuilder.compile(tmpdir=tmpdir, verbose=False)
    dest = os.path.join(root, "drivers", "native", os.path.basename(so))
    shutil.copyfile(so, dest + ".tmp")
    os.replace(dest + ".tmp", dest)
    return dest


if __name__ == "__main__":
    print(build_in_place())
