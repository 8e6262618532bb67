"""cffi build (API mode) for the DAHDI binding: drivers.native._dahdi.

Request numbers, constants and struct layouts come from <dahdi/user.h> through the
compiler (`#define NAME ...`, structs ending in `...;`), never from copied numbers.

Every system call the binding makes goes through one table of function pointers,
`hl_sys`: libc's calls by default, or shims that call `extern "Python"` callbacks, so
the simulator's DAHDI emulation can answer them in tests. `hl_exchange` writes every
channel's transmit block and reads every channel's receive block in one C call per tick.

Build in place: `python cffi_build/build_dahdi.py` (from the repository root or anywhere).
"""
import os
import shutil
import sys

from cffi import FFI

# Constants read from the header. DAHDI_RXMIRROR/DAHDI_TXMIRROR exist only under
# CONFIG_DAHDI_MIRROR and must not appear here: one undefined name fails the build.
_CONSTANTS = """
    ELAST
    DAHDI_CODE DAHDI_MAX_BLOCKSIZE DAHDI_DEFAULT_BLOCKSIZE DAHDI_DEFAULT_NUM_BUFS
    DAHDI_GET_BLOCKSIZE DAHDI_SET_BLOCKSIZE DAHDI_FLUSH DAHDI_GET_PARAMS DAHDI_SET_PARAMS
    DAHDI_HOOK DAHDI_GETEVENT DAHDI_SPANSTAT DAHDI_GET_BUFINFO DAHDI_SET_BUFINFO
    DAHDI_CHANNO DAHDI_SPECIFY DAHDI_SETLAW DAHDI_GETRXBITS DAHDI_SETTXBITS
    DAHDI_GET_PARAMS_RETURN_MASTER
    DAHDI_ONHOOK DAHDI_OFFHOOK DAHDI_WINK DAHDI_FLASH DAHDI_START DAHDI_RING DAHDI_RINGOFF
    DAHDI_FLUSH_READ DAHDI_FLUSH_WRITE DAHDI_FLUSH_BOTH DAHDI_FLUSH_EVENT DAHDI_FLUSH_ALL
    DAHDI_POLICY_IMMEDIATE DAHDI_POLICY_WHEN_FULL
    DAHDI_LAW_DEFAULT DAHDI_LAW_MULAW DAHDI_LAW_ALAW
    DAHDI_ALARM_NONE DAHDI_ALARM_RECOVER DAHDI_ALARM_LOOPBACK DAHDI_ALARM_YELLOW
    DAHDI_ALARM_RED DAHDI_ALARM_BLUE DAHDI_ALARM_NOTOPEN
    DAHDI_EVENT_NONE DAHDI_EVENT_ONHOOK DAHDI_EVENT_RINGOFFHOOK DAHDI_EVENT_WINKFLASH
    DAHDI_EVENT_ALARM DAHDI_EVENT_NOALARM DAHDI_EVENT_ABORT DAHDI_EVENT_OVERRUN
    DAHDI_EVENT_BADFCS DAHDI_EVENT_DIALCOMPLETE DAHDI_EVENT_RINGERON DAHDI_EVENT_RINGEROFF
    DAHDI_EVENT_HOOKCOMPLETE DAHDI_EVENT_BITSCHANGED DAHDI_EVENT_PULSE_START
    DAHDI_EVENT_TIMER_EXPIRED DAHDI_EVENT_TIMER_PING DAHDI_EVENT_POLARITY
    DAHDI_EVENT_RINGBEGIN DAHDI_EVENT_EC_DISABLED DAHDI_EVENT_REMOVED
    DAHDI_EVENT_READ_OVERRUN DAHDI_EVENT_WRITE_UNDERRUN
    DAHDI_EVENT_PULSEDIGIT DAHDI_EVENT_DTMFDOWN DAHDI_EVENT_DTMFUP
    DAHDI_SIG_NONE DAHDI_SIG_FXSLS DAHDI_SIG_FXSGS DAHDI_SIG_FXSKS DAHDI_SIG_FXOLS
    DAHDI_SIG_FXOGS DAHDI_SIG_FXOKS DAHDI_SIG_EM DAHDI_SIG_CLEAR DAHDI_SIG_HDLCRAW
    DAHDI_SIG_HDLCFCS DAHDI_SIG_HDLCNET DAHDI_SIG_SLAVE DAHDI_SIG_SF DAHDI_SIG_CAS
    DAHDI_SIG_DACS DAHDI_SIG_EM_E1 DAHDI_SIG_DACS_RBS DAHDI_SIG_HARDHDLC DAHDI_SIG_MTP2
    DAHDI_CONFIG_CCS DAHDI_CONFIG_HDB3 DAHDI_CONFIG_CRC4 DAHDI_CONFIG_AMI
    HL_IOC_READ HL_IOC_WRITE HL_WRITE_ERR HL_UNREAD HL_SHORT
""".split()

CDEF = "\n".join(f"#define {name} ..." for name in _CONSTANTS) + """

struct dahdi_params {
    int channo; int spanno; int chanpos; int sigtype; int sigcap; int rxisoffhook;
    int rxbits; int txbits; int txhooksig; int rxhooksig; int curlaw; int idlebits;
    char name[40];
    int prewinktime; int preflashtime; int winktime; int flashtime; int starttime;
    int rxwinktime; int rxflashtime; int debouncetime;
    int pulsebreaktime; int pulsemaketime; int pulseaftertime;
    unsigned int chan_alarms;
    ...;
};

struct dahdi_spaninfo {
    int spanno; char name[20]; char desc[40]; int alarms; int txlevel; int rxlevel;
    int bpvcount; int crc4count; int ebitcount; int fascount;
    unsigned int fecount; unsigned int cvcount; unsigned int becount; unsigned int prbs;
    unsigned int errsec;
    int irqmisses; int syncsrc; int numchans; int totalchans; int totalspans; int lbo;
    int lineconfig; char lboname[40]; char location[40]; char manufacturer[40];
    char devicetype[40]; int irq; int linecompat; char spantype[6];
    ...;
};

struct dahdi_bufferinfo {
    int txbufpolicy; int rxbufpolicy; int numbufs; int bufsize; int readbufs; int writebufs;
    ...;
};

struct pollfd { int fd; short events; short revents; ...; };

/* The system-call seam. */
void hl_use_libc(void);
void hl_use_python(void);
int hl_using_python(void);

/* Thin calls through the seam: result >= 0, or -errno. EINTR is retried. */
int hl_open(const char *path, int flags);
int hl_close(int fd);
int hl_ioctl(int fd, unsigned long request, void *arg);
long hl_read(int fd, void *buf, unsigned long count);
long hl_write(int fd, const void *buf, unsigned long count);
int hl_poll(struct pollfd *fds, int nfds, int timeout_ms);

unsigned int hl_ioc_size(unsigned long request);
unsigned int hl_ioc_dir(unsigned long request);

int hl_exchange(int n, const int *fds, const uint8_t *tx, uint8_t *rx, int block,
                int *status);

/* Python ends of the seam (drivers/native/dahdi.py defines them). errno goes in *err. */
extern "Python" int hl_py_open(const char *path, int flags, int *err);
extern "Python" int hl_py_close(int fd, int *err);
extern "Python" int hl_py_ioctl(int fd, unsigned long request, void *arg, int *err);
extern "Python" long hl_py_read(int fd, void *buf, unsigned long count, int *err);
extern "Python" long hl_py_write(int fd, const void *buf, unsigned long count, int *err);
extern "Python" int hl_py_poll(struct pollfd *fds, unsigned long nfds, int timeout_ms,
                               int *err);
"""

SOURCE = r"""
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <dahdi/user.h>

#define HL_IOC_READ  _IOC_READ
#define HL_IOC_WRITE _IOC_WRITE
/* hl_exchange status codes (0 is success; -errno is a failed read). */
#define HL_WRITE_ERR 4096   /* status -(HL_WRITE_ERR + errno): the write failed, nothing read */
#define HL_UNREAD    1      /* written, read not attempted: another channel's write was
                               refused for a pending event, which must be fetched first */
#define HL_SHORT     2      /* the read or write moved fewer bytes than a block */

typedef struct hl_syscalls {
    int (*open)(const char *path, int flags);
    int (*close)(int fd);
    int (*ioctl)(int fd, unsigned long request, void *arg);
    ssize_t (*read)(int fd, void *buf, size_t count);
    ssize_t (*write)(int fd, const void *buf, size_t count);
    int (*poll)(struct pollfd *fds, nfds_t nfds, int timeout_ms);
} hl_syscalls;

static int hl_libc_open(const char *path, int flags) { return open(path, flags); }
static int hl_libc_ioctl(int fd, unsigned long request, void *arg)
{
    return ioctl(fd, request, arg);
}

static const hl_syscalls hl_libc = {
    hl_libc_open, close, hl_libc_ioctl, read, write, poll,
};

/* Forward declarations of the extern "Python" callbacks cffi emits below. */
static int hl_py_open(const char *path, int flags, int *err);
static int hl_py_close(int fd, int *err);
static int hl_py_ioctl(int fd, unsigned long request, void *arg, int *err);
static long hl_py_read(int fd, void *buf, unsigned long count, int *err);
static long hl_py_write(int fd, const void *buf, unsigned long count, int *err);
static int hl_py_poll(struct pollfd *fds, unsigned long nfds, int timeout_ms, int *err);

/* Shims: a Python callback reports errno through *err; set the real errno from it so
   the code above the seam cannot tell the emulation from the kernel. */
#define HL_FAIL(r, e) do { if ((r) < 0) errno = (e) ? (e) : EIO; } while (0)
static int hl_shim_open(const char *path, int flags)
{ int e = 0; int r = hl_py_open(path, flags, &e); HL_FAIL(r, e); return r; }
static int hl_shim_close(int fd)
{ int e = 0; int r = hl_py_close(fd, &e); HL_FAIL(r, e); return r; }
static int hl_shim_ioctl(int fd, unsigned long request, void *arg)
{ int e = 0; int r = hl_py_ioctl(fd, request, arg, &e); HL_FAIL(r, e); return r; }
static ssize_t hl_shim_read(int fd, void *buf, size_t count)
{ int e = 0; long r = hl_py_read(fd, buf, count, &e); HL_FAIL(r, e); return r; }
static ssize_t hl_shim_write(int fd, const void *buf, size_t count)
{ int e = 0; long r = hl_py_write(fd, buf, count, &e); HL_FAIL(r, e); return r; }
static int hl_shim_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{ int e = 0; int r = hl_py_poll(fds, nfds, timeout_ms, &e); HL_FAIL(r, e); return r; }

static const hl_syscalls hl_python = {
    hl_shim_open, hl_shim_close, hl_shim_ioctl, hl_shim_read, hl_shim_write, hl_shim_poll,
};

static hl_syscalls hl_sys = {
    hl_libc_open, close, hl_libc_ioctl, read, write, poll,
};

static void hl_use_libc(void) { hl_sys = hl_libc; }
static void hl_use_python(void) { hl_sys = hl_python; }
static int hl_using_python(void) { return hl_sys.read == hl_shim_read; }

static int hl_open(const char *path, int flags)
{
    int r;
    do r = hl_sys.open(path, flags); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static int hl_close(int fd)
{
    int r = hl_sys.close(fd);   /* never retry close: the fd is gone either way */
    return r < 0 ? -errno : r;
}

static int hl_ioctl(int fd, unsigned long request, void *arg)
{
    int r;
    do r = hl_sys.ioctl(fd, request, arg); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static long hl_read(int fd, void *buf, unsigned long count)
{
    ssize_t r;
    do r = hl_sys.read(fd, buf, count); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : (long)r;
}

static long hl_write(int fd, const void *buf, unsigned long count)
{
    ssize_t r;
    do r = hl_sys.write(fd, buf, count); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : (long)r;
}

static int hl_poll(struct pollfd *fds, int nfds, int timeout_ms)
{
    int r;
    do r = hl_sys.poll(fds, (nfds_t)nfds, timeout_ms); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static unsigned int hl_ioc_size(unsigned long request) { return _IOC_SIZE(request); }
static unsigned int hl_ioc_dir(unsigned long request) { return _IOC_DIR(request); }

/* One tick for n channels: first write every tx block, then read every rx block, so a
   blocking read (the clock) never waits in front of a channel that has not written yet.
   tx NULL: read only; rx NULL: write only. Returns how many statuses are not 0. */
static int hl_exchange(int n, const int *fds, const uint8_t *tx, uint8_t *rx, int block,
                       int *status)
{
    int i, held = 0, flagged = 0;
    long r;

    for (i = 0; i < n; i++)
        status[i] = 0;
    if (tx) {
        for (i = 0; i < n; i++) {
            r = hl_write(fds[i], tx + (size_t)i * block, (unsigned long)block);
            if (r < 0) {
                status[i] = (int)(r - HL_WRITE_ERR);
                if (r == -ELAST)
                    held++;
            } else if (r < block) {
                status[i] = HL_SHORT;
            }
        }
    }
    if (rx && !(tx && held)) {
        for (i = 0; i < n; i++) {
            if (status[i] < 0)
                continue;
            r = hl_read(fds[i], rx + (size_t)i * block, (unsigned long)block);
            if (r < 0)
                status[i] = (int)r;
            else if (r < block)
                status[i] = HL_SHORT;
        }
    } else if (rx) {
        for (i = 0; i < n; i++)
            if (status[i] == 0)
                status[i] = HL_UNREAD;
    }
    for (i = 0; i < n; i++)
        if (status[i])
            flagged++;
    return flagged;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("drivers.native._dahdi", SOURCE)

if __name__ == "__main__":
    # Build under build/ and copy the extension next to drivers/native/dahdi.py.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = os.path.join(root, "build", "cffi-dahdi")
    so = ffibuilder.compile(tmpdir=tmp, verbose="-v" in sys.argv)
    dest = os.path.join(root, "drivers", "native", os.path.basename(so))
    shutil.copy2(so, dest)
    print(dest)
