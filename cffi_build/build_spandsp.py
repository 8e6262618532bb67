"""cffi build for SpanDSP 0.0.6 (Debian's libspandsp-dev) -> drivers.native._spandsp.

API mode: compiled against the installed headers, so struct layouts and constants come
from the compiler. Only drivers/native/spandsp.py imports the result.

The small C helpers in SOURCE exist so that Python makes one call per 20 ms block:
per-sample entry points (echo_can_update) loop in C, and callbacks that SpanDSP fires
during a block (fax phase E, caller ID messages, supervisory tones) are captured into
C structs that Python reads after the call, instead of re-entering Python.

Run from the repository root: `python cffi_build/build_spandsp.py` builds the extension
in place (drivers/native/_spandsp*.so).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sysconfig

import cffi


def _multiarch() -> str | None:
    """The multiarch triplet (x86_64-linux-gnu on Debian amd64), from Python or gcc."""
    triplet = sysconfig.get_config_var("MULTIARCH")
    if triplet:
        return triplet
    try:
        out = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True,
                             check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or None


def _spandsp_include_dirs() -> list[str]:
    """Debian puts spandsp.h in the multiarch include directory (it is arch-specific)."""
    candidates = []
    triplet = _multiarch()
    if triplet:
        candidates.append(os.path.join("/usr/include", triplet))
    candidates += sorted(os.path.dirname(p) for p in glob.glob("/usr/include/*/spandsp.h"))
    candidates.append("/usr/include")
    for d in candidates:
        if os.path.exists(os.path.join(d, "spandsp.h")):
            return [d]
    raise SystemExit("spandsp.h not found: install libspandsp-dev (and libtiff-dev)")


CDEF = r"""
/* ---- DTMF ---- */
typedef struct dtmf_rx_state_s dtmf_rx_state_t;
typedef struct dtmf_tx_state_s dtmf_tx_state_t;
typedef void (*digits_rx_callback_t)(void *user_data, const char *digits, int len);
dtmf_rx_state_t *dtmf_rx_init(dtmf_rx_state_t *s, digits_rx_callback_t callback, void *user_data);
int dtmf_rx_free(dtmf_rx_state_t *s);
void dtmf_rx_parms(dtmf_rx_state_t *s, int filter_dialtone, int twist, int reverse_twist,
                   int threshold);
int dtmf_rx_status(dtmf_rx_state_t *s);
dtmf_tx_state_t *dtmf_tx_init(dtmf_tx_state_t *s);
int dtmf_tx_free(dtmf_tx_state_t *s);
int dtmf_tx_put(dtmf_tx_state_t *s, const char *digits, int len);
int dtmf_tx(dtmf_tx_state_t *s, int16_t amp[], int max_samples);
void dtmf_tx_set_level(dtmf_tx_state_t *s, int level, int twist);
void dtmf_tx_set_timing(dtmf_tx_state_t *s, int on_time, int off_time);
#define MAX_DTMF_DIGITS ...
int hl_dtmf_rx(dtmf_rx_state_t *s, const int16_t *amp, int n, char *out, int max);

/* ---- caller ID (ADSI) ---- */
typedef struct adsi_tx_state_s adsi_tx_state_t;
enum {
    ADSI_STANDARD_NONE, ADSI_STANDARD_CLASS, ADSI_STANDARD_CLIP, ADSI_STANDARD_ACLIP,
    ADSI_STANDARD_JCLIP, ADSI_STANDARD_CLIP_DTMF, ADSI_STANDARD_TDD
};
adsi_tx_state_t *adsi_tx_init(adsi_tx_state_t *s, int standard);
int adsi_tx_free(adsi_tx_state_t *s);
void adsi_tx_set_preamble(adsi_tx_state_t *s, int preamble_len, int preamble_ones_len,
                          int postamble_ones_len, int stop_bits);
int adsi_tx(adsi_tx_state_t *s, int16_t amp[], int max_len);
void adsi_tx_send_alert_tone(adsi_tx_state_t *s);
int adsi_tx_put_message(adsi_tx_state_t *s, const uint8_t *msg, int len);
int adsi_add_field(adsi_tx_state_t *s, uint8_t *msg, int len, uint8_t field_type,
                   uint8_t const *field_body, int field_len);
const char *adsi_standard_to_str(int standard);

#define HL_ADSI_MAX_MSGS ...
#define HL_ADSI_MSG_LEN ...
typedef struct {
    int n_msgs;
    int dropped;
    int len[8];
    uint8_t msg[8][256];
    ...;
} hl_adsi_rx_t;
hl_adsi_rx_t *hl_adsi_rx_new(int standard);
void hl_adsi_rx_free(hl_adsi_rx_t *h);
int hl_adsi_rx(hl_adsi_rx_t *h, const int16_t *amp, int n);
int hl_adsi_fields(hl_adsi_rx_t *h, int index, uint8_t *types, int *offsets, int *lengths,
                   int max_fields);

/* ---- echo canceller ---- */
typedef struct echo_can_state_s echo_can_state_t;
enum {
    ECHO_CAN_USE_ADAPTION, ECHO_CAN_USE_NLP, ECHO_CAN_USE_CNG, ECHO_CAN_USE_CLIP,
    ECHO_CAN_USE_SUPPRESSOR, ECHO_CAN_USE_TX_HPF, ECHO_CAN_USE_RX_HPF, ECHO_CAN_DISABLE
};
void echo_can_adaption_mode(echo_can_state_t *ec, int adaption_mode);
typedef struct {
    echo_can_state_t *ec;
    int taps;
    int nlp;
    int suppressing;
    ...;
} hl_ec_t;
hl_ec_t *hl_ec_new(int taps, int spandsp_mode, int nlp);
void hl_ec_free(hl_ec_t *h);
void hl_ec_flush(hl_ec_t *h);
void hl_ec_block(hl_ec_t *h, const int16_t *tx, const int16_t *rx, int16_t *out, int n);

/* ---- fax (T.30 over V.17/V.29/V.27ter) ---- */
typedef struct fax_state_s fax_state_t;
typedef struct t30_state_s t30_state_t;
typedef struct {
    int bit_rate;
    int error_correcting_mode;
    int pages_tx;
    int pages_rx;
    int pages_in_file;
    int x_resolution;
    int y_resolution;
    int width;
    int length;
    int image_size;
    int encoding;
    int bad_rows;
    int longest_bad_row_run;
    int error_correcting_mode_retries;
    int current_status;
    ...;
} t30_stats_t;
enum { T30_SUPPORT_V27TER, T30_SUPPORT_V29, T30_SUPPORT_V17 };
enum { T30_ERR_OK };
int fax_rx(fax_state_t *s, int16_t *amp, int len);
int fax_tx(fax_state_t *s, int16_t *amp, int max_len);
void t30_get_transfer_statistics(t30_state_t *s, t30_stats_t *t);
const char *t30_completion_code_to_str(int result);
const char *t30_get_rx_ident(t30_state_t *s);
void t30_terminate(t30_state_t *s);

typedef struct {
    fax_state_t *fax;
    t30_state_t *t30;
    int done;
    int result;
    t30_stats_t final;
    ...;
} hl_fax_t;
hl_fax_t *hl_fax_new(int calling_party, int receive, const char *file, const char *ident,
                     int modems, int ecm);
void hl_fax_free(hl_fax_t *h);

/* ---- G3 TIFF pages (libtiff, which SpanDSP's fax uses for its files) ---- */
extern "Python" void hl_tiff_message(int is_error, const char *module, const char *text);
void hl_tiff_init(void);
int hl_tiff_write(const char *path, const uint8_t *bits, int width, const int *rows,
                  int pages, double xres_dpi, double yres_dpi, int group4, char *err, int errlen);
int hl_tiff_count(const char *path, char *err, int errlen);
int hl_tiff_info(const char *path, int page, int *width, int *rows, double *xres_dpi,
                 double *yres_dpi, char *err, int errlen);
int hl_tiff_read(const char *path, int page, uint8_t *out, int row_bytes, int rows,
                 char *err, int errlen);

/* ---- SpanDSP's own logging (process-global handlers) ---- */
typedef struct logging_state_s logging_state_t;
enum {
    SPAN_LOG_SHOW_SEVERITY, SPAN_LOG_SHOW_PROTOCOL, SPAN_LOG_SHOW_TAG,
    SPAN_LOG_NONE, SPAN_LOG_ERROR, SPAN_LOG_WARNING, SPAN_LOG_PROTOCOL_ERROR,
    SPAN_LOG_PROTOCOL_WARNING, SPAN_LOG_FLOW, SPAN_LOG_DEBUG
};
typedef void (*message_handler_func_t)(int level, const char *text);
typedef void (*error_handler_func_t)(const char *text);
void span_set_message_handler(message_handler_func_t func);
void span_set_error_handler(error_handler_func_t func);
int span_log_set_level(logging_state_t *s, int level);
int span_log_set_tag(logging_state_t *s, const char *tag);
logging_state_t *fax_get_logging_state(fax_state_t *s);
logging_state_t *t30_get_logging_state(t30_state_t *s);
extern "Python" void hl_span_message(int level, const char *text);
extern "Python" void hl_span_error(const char *text);
int hl_stderr_linked(void);

/* ---- supervisory tones ---- */
typedef struct super_tone_rx_descriptor_s super_tone_rx_descriptor_t;
super_tone_rx_descriptor_t *super_tone_rx_make_descriptor(super_tone_rx_descriptor_t *desc);
int super_tone_rx_free_descriptor(super_tone_rx_descriptor_t *desc);
int super_tone_rx_add_tone(super_tone_rx_descriptor_t *desc);
int super_tone_rx_add_element(super_tone_rx_descriptor_t *desc, int tone, int f1, int f2,
                              int min, int max);
#define HL_TONE_MAX_EVENTS ...
typedef struct {
    int n_events;
    int code[16];
    int level[16];
    int delay[16];
    ...;
} hl_tone_rx_t;
hl_tone_rx_t *hl_tone_rx_new(super_tone_rx_descriptor_t *desc);
void hl_tone_rx_free(hl_tone_rx_t *h);
int hl_tone_rx(hl_tone_rx_t *h, const int16_t *amp, int n);
"""

SOURCE = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <tiffio.h>
#include <spandsp.h>

static void hl_tiff_message(int is_error, const char *module, const char *text);

/* DTMF: run the detector over one block, then drain the digits it queued. */
static int hl_dtmf_rx(dtmf_rx_state_t *s, const int16_t *amp, int n, char *out, int max)
{
    dtmf_rx(s, amp, n);
    return (int) dtmf_rx_get(s, out, max);
}

/* Caller ID receiver: SpanDSP hands over whole checked messages through put_msg while
   adsi_rx runs; they are kept here until Python collects them after the block. */
#define HL_ADSI_MAX_MSGS 8
#define HL_ADSI_MSG_LEN 256
typedef struct {
    int n_msgs;
    int dropped;
    int len[HL_ADSI_MAX_MSGS];
    uint8_t msg[HL_ADSI_MAX_MSGS][HL_ADSI_MSG_LEN];
    adsi_rx_state_t *rx;
} hl_adsi_rx_t;

static void hl_adsi_put_msg(void *user, const uint8_t *msg, int len)
{
    hl_adsi_rx_t *h = (hl_adsi_rx_t *) user;
    if (len <= 0 || msg == NULL)
        return;                 /* status report, not a message */
    if (h->n_msgs >= HL_ADSI_MAX_MSGS) {
        h->dropped++;
        return;
    }
    if (len > HL_ADSI_MSG_LEN)
        len = HL_ADSI_MSG_LEN;
    memcpy(h->msg[h->n_msgs], msg, (size_t) len);
    h->len[h->n_msgs] = len;
    h->n_msgs++;
}

static hl_adsi_rx_t *hl_adsi_rx_new(int standard)
{
    hl_adsi_rx_t *h = (hl_adsi_rx_t *) calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->rx = adsi_rx_init(NULL, standard, hl_adsi_put_msg, h);
    if (h->rx == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

static void hl_adsi_rx_free(hl_adsi_rx_t *h)
{
    if (h == NULL)
        return;
    adsi_rx_free(h->rx);
    free(h);
}

static int hl_adsi_rx(hl_adsi_rx_t *h, const int16_t *amp, int n)
{
    h->n_msgs = 0;
    adsi_rx(h->rx, amp, n);
    return h->n_msgs;
}

/* Split message `index` into fields with adsi_next_field; the first entry is the
   message type (length 0). Returns the number of entries, or -2 if the message is
   malformed. Offsets point into h->msg[index]. */
static int hl_adsi_fields(hl_adsi_rx_t *h, int index, uint8_t *types, int *offsets,
                          int *lengths, int max_fields)
{
    int pos = 0;
    int count = 0;
    uint8_t type;
    const uint8_t *body;
    int len;
    const uint8_t *msg = h->msg[index];
    while (count < max_fields) {
        pos = adsi_next_field(h->rx, msg, h->len[index], pos, &type, &body, &len);
        if (pos == -1)
            break;
        if (pos < 0)
            return -2;
        types[count] = type;
        offsets[count] = body ? (int) (body - msg) : 0;
        lengths[count] = len;
        count++;
    }
    return count;
}

/* Echo canceller. echo_can_update is per sample: the block loop is here so Python calls
   once a block. SpanDSP 0.0.6's own NLP mutes every received signal quieter than about
   -10 dBm0 (near-end speech included), so it is never enabled; this NLP instead mutes
   the canceller's output only while the far end talks alone:
   - far end active: the loudest |tx| within the echo tail (the last `taps` samples)
     is above HL_EC_FAR_ACTIVE (about -40 dBm0);
   - near end silent: Geigel double-talk detection (echo returns at least 6 dB down, so a
     received peak above half the far end's recent peak is the near end talking), with
     a hangover so that the ends of near-end words are not clipped. */
#define HL_EC_FAR_ACTIVE 256
#define HL_EC_HANGOVER 400

typedef struct {
    echo_can_state_t *ec;
    int taps;
    int nlp;
    int hangover;
    int pos;
    int suppressing;
    int16_t *hist;
} hl_ec_t;

static hl_ec_t *hl_ec_new(int taps, int spandsp_mode, int nlp)
{
    hl_ec_t *h = (hl_ec_t *) calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->hist = (int16_t *) calloc((size_t) taps, sizeof(int16_t));
    h->ec = echo_can_init(taps, spandsp_mode & ~ECHO_CAN_USE_NLP);
    if (h->hist == NULL || h->ec == NULL) {
        if (h->ec)
            echo_can_free(h->ec);
        free(h->hist);
        free(h);
        return NULL;
    }
    h->taps = taps;
    h->nlp = nlp;
    return h;
}

static void hl_ec_free(hl_ec_t *h)
{
    if (h == NULL)
        return;
    echo_can_free(h->ec);
    free(h->hist);
    free(h);
}

static void hl_ec_flush(hl_ec_t *h)
{
    echo_can_flush(h->ec);
    memset(h->hist, 0, (size_t) h->taps * sizeof(int16_t));
    h->hangover = 0;
    h->suppressing = 0;
}

static void hl_ec_block(hl_ec_t *h, const int16_t *tx, const int16_t *rx, int16_t *out, int n)
{
    int i;
    int a;
    int rx_peak = 0;
    int tx_peak = 0;
    for (i = 0; i < n; i++) {
        out[i] = echo_can_update(h->ec, tx[i], rx[i]);
        a = rx[i] < 0 ? -rx[i] : rx[i];
        if (a > rx_peak)
            rx_peak = a;
        a = tx[i] < 0 ? -tx[i] : tx[i];
        h->hist[h->pos] = (int16_t) (a > 32767 ? 32767 : a);
        if (++h->pos >= h->taps)
            h->pos = 0;
    }
    h->suppressing = 0;
    if (!h->nlp)
        return;
    for (i = 0; i < h->taps; i++) {
        if (h->hist[i] > tx_peak)
            tx_peak = h->hist[i];
    }
    if (rx_peak > tx_peak / 2)
        h->hangover = HL_EC_HANGOVER;
    else if (h->hangover > 0)
        h->hangover -= n;
    if (tx_peak > HL_EC_FAR_ACTIVE && h->hangover <= 0) {
        memset(out, 0, (size_t) n * sizeof(int16_t));
        h->suppressing = 1;
    }
}

/* Fax: the phase E handler (end of call) records the outcome for Python to read. */
typedef struct {
    fax_state_t *fax;
    t30_state_t *t30;
    int done;
    int result;
    t30_stats_t final;
} hl_fax_t;

static void hl_fax_phase_e(t30_state_t *t30, void *user, int result)
{
    hl_fax_t *h = (hl_fax_t *) user;
    t30_get_transfer_statistics(t30, &h->final);
    h->result = result;
    h->done = 1;
}

static hl_fax_t *hl_fax_new(int calling_party, int receive, const char *file,
                            const char *ident, int modems, int ecm)
{
    hl_fax_t *h = (hl_fax_t *) calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->fax = fax_init(NULL, calling_party);
    if (h->fax == NULL) {
        free(h);
        return NULL;
    }
    h->t30 = fax_get_t30_state(h->fax);
    if (ident != NULL && ident[0])
        t30_set_tx_ident(h->t30, ident);
    t30_set_supported_modems(h->t30, modems);
    t30_set_ecm_capability(h->t30, ecm);
    if (ecm)
        t30_set_supported_compressions(h->t30, T30_SUPPORT_T4_1D_COMPRESSION
                                       | T30_SUPPORT_T4_2D_COMPRESSION
                                       | T30_SUPPORT_T6_COMPRESSION);
    t30_set_phase_e_handler(h->t30, hl_fax_phase_e, h);
    /* Keep sending silence when T.30 is idle so that both directions stay in step. */
    fax_set_transmit_on_idle(h->fax, 1);
    if (file != NULL && file[0]) {
        if (receive)
            t30_set_rx_file(h->t30, file, -1);
        else
            t30_set_tx_file(h->t30, file, -1, -1);
    }
    return h;
}

static void hl_fax_free(hl_fax_t *h)
{
    if (h == NULL)
        return;
    fax_free(h->fax);
    free(h);
}

/* ---- TIFF pages: 1 bit per pixel, 1 = black, rows packed MSB first ---- */

/* libtiff reports problems through process-global handlers that print on stderr by
   default. Both SpanDSP's fax code and the helpers below use libtiff: route everything
   to Python logging, and keep the last error of this thread for the helpers' messages. */
static __thread char hl_tiff_last[256];

static void hl_tiff_report(int is_error, const char *module, const char *fmt, va_list ap)
{
    char text[256];
    vsnprintf(text, sizeof(text), fmt, ap);
    if (is_error)
        snprintf(hl_tiff_last, sizeof(hl_tiff_last), "%s", text);
    hl_tiff_message(is_error, module ? module : "", text);
}

static void hl_tiff_error_handler(const char *module, const char *fmt, va_list ap)
{
    hl_tiff_report(1, module, fmt, ap);
}

static void hl_tiff_warning_handler(const char *module, const char *fmt, va_list ap)
{
    hl_tiff_report(0, module, fmt, ap);
}

static void hl_tiff_init(void)
{
    TIFFSetErrorHandler(hl_tiff_error_handler);
    TIFFSetWarningHandler(hl_tiff_warning_handler);
}

static void hl_err(char *err, int errlen, const char *what, const char *path)
{
    if (err != NULL && errlen > 0) {
        if (hl_tiff_last[0])
            snprintf(err, (size_t) errlen, "%s: %s (%s)", what, path, hl_tiff_last);
        else
            snprintf(err, (size_t) errlen, "%s: %s", what, path);
    }
    hl_tiff_last[0] = '\0';
}

static int hl_tiff_write(const char *path, const uint8_t *bits, int width, const int *rows,
                         int pages, double xres_dpi, double yres_dpi, int group4,
                         char *err, int errlen)
{
    TIFF *t;
    int page, row;
    int row_bytes = (width + 7) / 8;
    const uint8_t *p = bits;
    if ((t = TIFFOpen(path, "w")) == NULL) {
        hl_err(err, errlen, "cannot create TIFF file", path);
        return -1;
    }
    for (page = 0; page < pages; page++) {
        TIFFSetField(t, TIFFTAG_SUBFILETYPE, FILETYPE_PAGE);
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t) width);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t) rows[page]);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 1);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISWHITE);
        TIFFSetField(t, TIFFTAG_FILLORDER, FILLORDER_LSB2MSB);
        if (group4) {
            TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_CCITTFAX4);
        } else {
            TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_CCITTFAX3);
            TIFFSetField(t, TIFFTAG_GROUP3OPTIONS, GROUP3OPT_FILLBITS);
        }
        TIFFSetField(t, TIFFTAG_RESOLUTIONUNIT, RESUNIT_INCH);
        TIFFSetField(t, TIFFTAG_XRESOLUTION, (float) xres_dpi);
        TIFFSetField(t, TIFFTAG_YRESOLUTION, (float) yres_dpi);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t) rows[page]);
        TIFFSetField(t, TIFFTAG_PAGENUMBER, (uint16_t) page, (uint16_t) pages);
        for (row = 0; row < rows[page]; row++) {
            if (TIFFWriteScanline(t, (void *) p, (uint32_t) row, 0) < 0) {
                TIFFClose(t);
                hl_err(err, errlen, "TIFF write failed", path);
                return -1;
            }
            p += row_bytes;
        }
        if (!TIFFWriteDirectory(t)) {
            TIFFClose(t);
            hl_err(err, errlen, "TIFF write failed", path);
            return -1;
        }
    }
    TIFFClose(t);
    return 0;
}

static int hl_tiff_count(const char *path, char *err, int errlen)
{
    TIFF *t;
    int n;
    if ((t = TIFFOpen(path, "r")) == NULL) {
        hl_err(err, errlen, "cannot open TIFF file", path);
        return -1;
    }
    n = (int) TIFFNumberOfDirectories(t);
    TIFFClose(t);
    return n;
}

static double hl_to_dpi(float value, uint16_t unit)
{
    return unit == RESUNIT_CENTIMETER ? value * 2.54 : value;
}

static TIFF *hl_tiff_open_page(const char *path, int page, char *err, int errlen)
{
    TIFF *t;
    if ((t = TIFFOpen(path, "r")) == NULL) {
        hl_err(err, errlen, "cannot open TIFF file", path);
        return NULL;
    }
    if (!TIFFSetDirectory(t, (uint16_t) page)) {
        TIFFClose(t);
        hl_err(err, errlen, "no such page in TIFF file", path);
        return NULL;
    }
    return t;
}

static int hl_tiff_info(const char *path, int page, int *width, int *rows, double *xres_dpi,
                        double *yres_dpi, char *err, int errlen)
{
    TIFF *t;
    uint32_t w = 0, h = 0;
    uint16_t bps = 1, spp = 1, unit = RESUNIT_INCH;
    float xr = 0, yr = 0;
    if ((t = hl_tiff_open_page(path, page, err, errlen)) == NULL)
        return -1;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_RESOLUTIONUNIT, &unit);
    TIFFGetField(t, TIFFTAG_XRESOLUTION, &xr);
    TIFFGetField(t, TIFFTAG_YRESOLUTION, &yr);
    TIFFClose(t);
    if (bps != 1 || spp != 1) {
        hl_err(err, errlen, "not a bilevel (1 bit per pixel) TIFF page", path);
        return -1;
    }
    *width = (int) w;
    *rows = (int) h;
    *xres_dpi = hl_to_dpi(xr, unit);
    *yres_dpi = hl_to_dpi(yr, unit);
    return 0;
}

static int hl_tiff_read(const char *path, int page, uint8_t *out, int row_bytes, int rows,
                        char *err, int errlen)
{
    TIFF *t;
    int row, i;
    uint16_t photometric = PHOTOMETRIC_MINISWHITE;
    if ((t = hl_tiff_open_page(path, page, err, errlen)) == NULL)
        return -1;
    if ((int) TIFFScanlineSize(t) != row_bytes) {
        TIFFClose(t);
        hl_err(err, errlen, "unexpected TIFF row size", path);
        return -1;
    }
    TIFFGetFieldDefaulted(t, TIFFTAG_PHOTOMETRIC, &photometric);
    for (row = 0; row < rows; row++) {
        if (TIFFReadScanline(t, out + (size_t) row * row_bytes, (uint32_t) row, 0) < 0) {
            TIFFClose(t);
            hl_err(err, errlen, "TIFF read failed", path);
            return -1;
        }
    }
    TIFFClose(t);
    if (photometric == PHOTOMETRIC_MINISBLACK) {
        /* Callers always get 1 = black. */
        for (i = 0; i < row_bytes * rows; i++)
            out[i] = (uint8_t) ~out[i];
    }
    return 0;
}

/* Supervisory tones: reports captured during one block. */
#define HL_TONE_MAX_EVENTS 16
typedef struct {
    int n_events;
    int code[HL_TONE_MAX_EVENTS];
    int level[HL_TONE_MAX_EVENTS];
    int delay[HL_TONE_MAX_EVENTS];
    super_tone_rx_state_t *rx;
} hl_tone_rx_t;

static void hl_tone_report(void *user, int code, int level, int delay)
{
    hl_tone_rx_t *h = (hl_tone_rx_t *) user;
    if (h->n_events >= HL_TONE_MAX_EVENTS)
        return;
    h->code[h->n_events] = code;
    h->level[h->n_events] = level;
    h->delay[h->n_events] = delay;
    h->n_events++;
}

static hl_tone_rx_t *hl_tone_rx_new(super_tone_rx_descriptor_t *desc)
{
    hl_tone_rx_t *h = (hl_tone_rx_t *) calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->rx = super_tone_rx_init(NULL, desc, hl_tone_report, h);
    if (h->rx == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

static void hl_tone_rx_free(hl_tone_rx_t *h)
{
    if (h == NULL)
        return;
    super_tone_rx_free(h->rx);
    free(h);
}

static int hl_tone_rx(hl_tone_rx_t *h, const int16_t *amp, int n)
{
    h->n_events = 0;
    super_tone_rx(h->rx, amp, n);
    return h->n_events;
}
"""

def _spandsp_archive() -> str:
    """Debian's libspandsp.a, linked in statically (see the note below)."""
    dirs = []
    triplet = _multiarch()
    if triplet:
        dirs.append(os.path.join("/usr/lib", triplet))
    dirs += ["/usr/lib", "/usr/local/lib"]
    for d in dirs:
        path = os.path.join(d, "libspandsp.a")
        if os.path.exists(path):
            return path
    raise SystemExit("libspandsp.a not found: install libspandsp-dev")


# Why static: Debian's SpanDSP 0.0.6 was built with debugging printf()s left in its echo
# canceller ("echo is ...", "Narrowband score ..." on stdout for every sample). Linking
# the archive into this module lets --wrap turn its __printf_chk into a no-op (nothing
# else in SpanDSP prints with printf: its logging goes through span_log). The archive is
# position-independent-executable code, which reaches `stderr` PC-relative: a shared
# object cannot do that with libc's copy, so `stderr` is wrapped by a local pointer set
# at load time. The archive's symbols stay private to this module (--exclude-libs).
SOURCE += r"""
__attribute__((visibility("hidden"))) int __wrap___printf_chk(int flag, const char *format, ...)
{
    (void) flag;
    (void) format;
    return 0;
}

__attribute__((visibility("hidden"))) FILE *__wrap_stderr;
/* With --wrap=stderr, this very file's `stderr` would also mean __wrap_stderr: name the
   C library's own through __real_stderr. */
extern FILE *__real_stderr;

__attribute__((constructor)) static void hl_init_stderr(void)
{
    __wrap_stderr = __real_stderr;
}

static int hl_stderr_linked(void)
{
    return __wrap_stderr != NULL && __wrap_stderr == __real_stderr;
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "drivers.native._spandsp",
    SOURCE,
    libraries=["tiff", "m"],
    include_dirs=_spandsp_include_dirs(),
    extra_objects=[_spandsp_archive()],
    extra_compile_args=["-O2", "-Wno-unused-function"],
    extra_link_args=["-Wl,--wrap=__printf_chk", "-Wl,--wrap=stderr",
                     "-Wl,--exclude-libs,ALL"],
)


def build_in_place() -> str:
    """Compile under build/ and copy the extension into drivers/native/ (the repository
    root is this file's parent's parent)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmpdir = os.path.join(root, "build", "cffi")
    so = ffibuilder.compile(tmpdir=tmpdir, verbose=False)
    dest = os.path.join(root, "drivers", "native", os.path.basename(so))
    shutil.copyfile(so, dest + ".tmp")
    os.replace(dest + ".tmp", dest)   # atomic: a running process keeps its old mapping
    return dest


if __name__ == "__main__":
    print(build_in_place())
