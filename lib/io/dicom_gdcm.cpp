// GDCM behind a C interface (dicom_gdcm.h): header fields and decoded pixel data of one DICOM file.
// The only C++ in the library outside CUDA. Compiled with -fvisibility=hidden
// -fvisibility-inlines-hidden, so no C++ symbol (ours or a template instance) leaves libsarco.so;
// no exception crosses into C (every entry point catches everything).
#include "dicom_gdcm.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmImage.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>

namespace {

void say(char *msg, size_t n, const char *fmt, const char *a = "", const char *b = "") {
    if (msg && n) std::snprintf(msg, n, fmt, a, b);
}

// GDCM prints to stderr by default; a library must not. Idempotent, so a race is harmless.
void quiet() {
    gdcm::Trace::SetDebug(false);
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
}

// The element's bytes, or an empty string when absent or not a plain value (a sequence).
std::string raw(const gdcm::DataSet &ds, uint16_t g, uint16_t e) {
    gdcm::Tag t(g, e);
    if (!ds.FindDataElement(t)) return std::string();
    const gdcm::DataElement &de = ds.GetDataElement(t);
    const gdcm::ByteValue *bv = de.GetByteValue();
    if (!bv || !bv->GetPointer()) return std::string();
    return std::string(bv->GetPointer(), bv->GetLength());
}

// A string value without DICOM's padding (spaces, NULs) and without control characters.
std::string text(const gdcm::DataSet &ds, uint16_t g, uint16_t e) {
    std::string s = raw(ds, g, e), out;
    for (char c : s)
        if (c == '\0') break;
        else out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
    size_t a = out.find_first_not_of(' '), z = out.find_last_not_of(' ');
    return a == std::string::npos ? std::string() : out.substr(a, z - a + 1);
}

void copy(char *dst, size_t n, const std::string &s) {
    std::snprintf(dst, n, "%s", s.c_str());
}

// A DS/IS multi-value "a\b\c": exactly want finite numbers, else 0.
int numbers(const gdcm::DataSet &ds, uint16_t g, uint16_t e, double *v, int want) {
    std::string s = text(ds, g, e);
    if (s.empty()) return 0;
    const char *p = s.c_str();
    for (int i = 0; i < want; i++) {
        char *end;
        double x = std::strtod(p, &end);
        if (end == p || !std::isfinite(x)) return 0;
        v[i] = x;
        while (*end == ' ') end++;
        if (i + 1 < want) {
            if (*end != '\\') return 0;
            p = end + 1;
        } else if (*end != '\0') {
            return 0;
        }
    }
    return 1;
}

// Binary US/UL/FD values, in the data set's byte order. -1 / NaN when absent or of the wrong size.
int64_t ushort(const gdcm::DataSet &ds, uint16_t g, uint16_t e, bool big) {
    std::string s = raw(ds, g, e);
    if (s.size() != 2) return -1;
    const unsigned char *b = reinterpret_cast<const unsigned char *>(s.data());
    return big ? (b[0] << 8 | b[1]) : (b[1] << 8 | b[0]);
}

int64_t ulong(const gdcm::DataSet &ds, uint16_t g, uint16_t e, bool big) {
    std::string s = raw(ds, g, e);
    if (s.size() != 4) return -1;
    const unsigned char *b = reinterpret_cast<const unsigned char *>(s.data());
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | b[big ? i : 3 - i];
    return v;
}

double fdouble(const gdcm::DataSet &ds, uint16_t g, uint16_t e, bool big) {
    std::string s = raw(ds, g, e);
    if (s.size() != 8) return NAN;
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = static_cast<unsigned char>(s[big ? 7 - i : i]);
    double v;
    std::memcpy(&v, b, 8); // little-endian host (x86-64, aarch64)
    return v;
}

// Sequence of Ultrasound Regions (0018,6011): the region that holds the image is the largest 2D
// tissue region (RegionSpatialFormat 1); its Physical Delta X/Y give the spacing when both units are
// cm (code 3). Another 2D region (a thumbnail) never lends its deltas to the image.
void us_regions(const gdcm::DataSet &ds, bool big, sarco_dcm_header *h) {
    gdcm::Tag t(0x0018, 0x6011);
    if (!ds.FindDataElement(t)) return;
    gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds.GetDataElement(t).GetValueAsSQ();
    if (!sq) return;
    double best_area = -1, bdx = 0, bdy = 0;
    int64_t bux = -1, buy = -1, box[4] = {0, 0, 0, 0};
    int distinct = 0;
    size_t n = sq->GetNumberOfItems();
    h->us_regions = static_cast<int>(n > 1000000 ? 1000000 : n);
    for (size_t i = 1; i <= n && i <= 1000; i++) {
        const gdcm::DataSet &it = sq->GetItem(i).GetNestedDataSet();
        if (ushort(it, 0x0018, 0x6012, big) != 1) continue; // not a 2D tissue image (M-mode, Doppler, ...)
        int64_t x0 = ulong(it, 0x0018, 0x6018, big), y0 = ulong(it, 0x0018, 0x601a, big);
        int64_t x1 = ulong(it, 0x0018, 0x601c, big), y1 = ulong(it, 0x0018, 0x601e, big);
        double area = (x0 >= 0 && x1 >= x0 && y0 >= 0 && y1 >= y0) ? double(x1 - x0 + 1) * double(y1 - y0 + 1) : 0;
        double dx = fdouble(it, 0x0018, 0x602c, big), dy = fdouble(it, 0x0018, 0x602e, big);
        if (best_area >= 0 && (dx != bdx || dy != bdy)) distinct = 1;
        if (area > best_area) {
            best_area = area, bdx = dx, bdy = dy;
            bux = ushort(it, 0x0018, 0x6024, big), buy = ushort(it, 0x0018, 0x6026, big);
            box[0] = x0, box[1] = y0, box[2] = x1, box[3] = y1;
        }
    }
    if (best_area < 0) return;
    h->us_regions_disagree = distinct;
    if (bux != 3 || buy != 3) {
        std::snprintf(h->us_units_note, sizeof h->us_units_note,
                      "the image's ultrasound region has physical units %lld/%lld, not cm (3): no spacing from it",
                      (long long)bux, (long long)buy);
        return;
    }
    if (!(std::isfinite(bdx) && std::isfinite(bdy) && bdx > 0 && bdy > 0)) {
        std::snprintf(h->us_units_note, sizeof h->us_units_note,
                      "the image's ultrasound region has physical deltas that are not > 0");
        return;
    }
    h->has_us_spacing = 1;
    h->us_spacing[0] = bdy * 10; // cm -> mm
    h->us_spacing[1] = bdx * 10;
    for (int k = 0; k < 4; k++) h->us_region_box[k] = box[k];
}

int read_header(const char *path, sarco_dcm_header *h, char *msg, size_t n) {
    std::memset(h, 0, sizeof *h);
    h->slope = 1;
    h->frames = 1;
    gdcm::Reader r;
    r.SetFileName(path);
    std::set<gdcm::Tag> skip; // skipping the pixel data's value leaves the stream at its first byte
    skip.insert(gdcm::Tag(0x7fe0, 0x0010));
    if (!r.ReadUpToTag(gdcm::Tag(0x7fe0, 0x0010), skip)) {
        say(msg, n, "%s: GDCM cannot parse the DICOM header (truncated or corrupt)", path);
        return SARCO_DCM_BAD;
    }
    const gdcm::File &f = r.GetFile();
    const gdcm::DataSet &ds = f.GetDataSet();
    const gdcm::TransferSyntax &ts = f.GetHeader().GetDataSetTransferSyntax();
    // GDCM hands out binary values already in host order, also for Explicit VR Big Endian files
    const bool big = false;
    h->encapsulated = ts.IsEncapsulated();
    h->native_avail = -1;
    if (!ts.IsEncapsulated() && ts != gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian) {
        struct stat sb;
        size_t pos = r.GetStreamCurrentPosition();
        if (::stat(path, &sb) == 0 && pos > 0 && static_cast<int64_t>(pos) <= sb.st_size)
            h->native_avail = sb.st_size - static_cast<int64_t>(pos);
    }
    copy(h->transfer_syntax, sizeof h->transfer_syntax, text(f.GetHeader(), 0x0002, 0x0010));
    copy(h->sop_class, sizeof h->sop_class, text(ds, 0x0008, 0x0016));
    if (!h->sop_class[0]) copy(h->sop_class, sizeof h->sop_class, text(f.GetHeader(), 0x0002, 0x0002));
    copy(h->series_uid, sizeof h->series_uid, text(ds, 0x0020, 0x000e));
    copy(h->series_description, sizeof h->series_description, text(ds, 0x0008, 0x103e));
    copy(h->modality, sizeof h->modality, text(ds, 0x0008, 0x0060));
    copy(h->photometric, sizeof h->photometric, text(ds, 0x0028, 0x0004));
    h->rows = ushort(ds, 0x0028, 0x0010, big);
    h->cols = ushort(ds, 0x0028, 0x0011, big);
    h->has_rows = h->rows >= 0 && h->cols >= 0;
    double fr;
    if (numbers(ds, 0x0028, 0x0008, &fr, 1)) {
        if (fr != std::floor(fr) || fr < 1 || fr > 1e9) {
            say(msg, n, "%s: NumberOfFrames is not a positive integer", path);
            return SARCO_DCM_BAD;
        }
        h->frames = static_cast<int64_t>(fr);
    }
    h->spp = ushort(ds, 0x0028, 0x0002, big);
    h->bits_allocated = ushort(ds, 0x0028, 0x0100, big);
    h->bits_stored = ushort(ds, 0x0028, 0x0101, big);
    h->high_bit = ushort(ds, 0x0028, 0x0102, big);
    h->pixel_rep = ushort(ds, 0x0028, 0x0103, big);
    h->planar = ushort(ds, 0x0028, 0x0006, big);
    h->has_position = numbers(ds, 0x0020, 0x0032, h->position, 3);
    h->has_orientation = numbers(ds, 0x0020, 0x0037, h->orientation, 6);
    h->has_pixel_spacing = numbers(ds, 0x0028, 0x0030, h->pixel_spacing, 2);
    double s = 1, i = 0;
    int hs = numbers(ds, 0x0028, 0x1053, &s, 1), hi = numbers(ds, 0x0028, 0x1052, &i, 1);
    if (hs || hi) {
        h->has_rescale = 1;
        h->slope = hs ? s : 1;
        h->intercept = hi ? i : 0;
    }
    h->has_tilt = numbers(ds, 0x0018, 0x1120, &h->tilt, 1);
    h->has_thickness = numbers(ds, 0x0018, 0x0050, &h->thickness, 1);
    us_regions(ds, big, h);
    return SARCO_DCM_OK;
}

// The decoder. gdcm::ImageReader is not used: Debian's GDCM keeps its asserts, and its pixmap reader
// asserts (aborts the process) on some malformed headers. Native pixel data is copied from the data
// element here; compressed data goes through a gdcm::Image we fill from our own checked header,
// whose GetBuffer runs the codec (JPEG, JPEG-LS, JPEG 2000, RLE).

struct owned { // freed unless handed to the caller, also when GDCM throws
    void *p = nullptr;
    ~owned() { std::free(p); }
};

int fail(char *msg, size_t n, int rc, const char *path, const char *what) {
    say(msg, n, "%s: %s", path, what);
    return rc;
}

// Native YBR_FULL_422 (PS3.5 8.2.6: Y0 Y1 Cb Cr for each pair of pixels in a row), expanded to
// YBR_FULL, each pair sharing its chroma.
int expand_422(const char *path, const unsigned char *src, uint64_t avail, const sarco_dcm_header *h,
               sarco_dcm_pixels *out, char *msg, size_t n) {
    if (h->bits_allocated != 8 || h->cols % 2)
        return fail(msg, n, SARCO_DCM_UNSUPPORTED, path,
                    "uncompressed YBR_FULL_422 is read with 8 bits and an even number of columns only");
    uint64_t pairs = static_cast<uint64_t>(h->rows) * static_cast<uint64_t>(h->cols / 2) *
                     static_cast<uint64_t>(h->frames);
    if (avail < pairs * 4) return fail(msg, n, SARCO_DCM_BAD, path, "the pixel data is truncated");
    owned dst;
    if (!(dst.p = std::malloc(pairs * 6))) return fail(msg, n, SARCO_DCM_NOMEM, path, "out of memory for the pixel data");
    unsigned char *d = static_cast<unsigned char *>(dst.p);
    for (uint64_t i = 0; i < pairs; i++) {
        const unsigned char *q = src + 4 * i;
        d[6 * i] = q[0], d[6 * i + 1] = q[2], d[6 * i + 2] = q[3];
        d[6 * i + 3] = q[1], d[6 * i + 4] = q[2], d[6 * i + 5] = q[3];
    }
    out->data = dst.p;
    dst.p = nullptr;
    out->bytes = pairs * 6;
    out->spp = 3, out->bits_allocated = 8, out->planar = 0, out->pixel_rep = 0;
    copy(out->photometric, sizeof out->photometric, "YBR_FULL");
    return SARCO_DCM_OK;
}

// PALETTE COLOR through its three lookup tables, as pydicom's apply_color_lut: index - first mapped
// clamped to the table, entries of 8 or 16 bits kept at that depth (GDCM's own filter keeps only the
// high byte of 16-bit entries). Segmented palettes are not read. idx: the decoded indices.
int apply_palette(const char *path, const gdcm::DataSet &ds, const sarco_dcm_header *h, const void *idx,
                  sarco_dcm_pixels *out, char *msg, size_t n) {
    if (h->spp != 1 || (h->bits_allocated != 8 && h->bits_allocated != 16))
        return fail(msg, n, SARCO_DCM_BAD, path, "a palette image must have one 8- or 16-bit sample per pixel");
    if (ds.FindDataElement(gdcm::Tag(0x0028, 0x1221)))
        return fail(msg, n, SARCO_DCM_UNSUPPORTED, path, "segmented palette colour lookup tables are not read");
    int64_t entries[3], first[3], bits[3];
    std::string data[3];
    for (int c = 0; c < 3; c++) {
        std::string d = raw(ds, 0x0028, static_cast<uint16_t>(0x1101 + c));
        if (d.size() != 6)
            return fail(msg, n, SARCO_DCM_BAD, path, "a palette lookup table descriptor is missing or malformed");
        const unsigned char *b = reinterpret_cast<const unsigned char *>(d.data());
        entries[c] = b[0] | b[1] << 8;
        if (entries[c] == 0) entries[c] = 65536;
        first[c] = b[2] | b[3] << 8;
        bits[c] = b[4] | b[5] << 8;
        data[c] = raw(ds, 0x0028, static_cast<uint16_t>(0x1201 + c));
        if ((bits[c] != 8 && bits[c] != 16) || bits[c] != bits[0] ||
            data[c].size() < static_cast<size_t>(entries[c]) * (bits[c] == 16 ? 2 : 1))
            return fail(msg, n, SARCO_DCM_BAD, path, "a palette lookup table is shorter than its descriptor, or not 8/16-bit");
    }
    const uint64_t bytes_out = bits[0] == 16 ? 2 : 1;
    const uint64_t count = static_cast<uint64_t>(h->rows) * static_cast<uint64_t>(h->cols) * static_cast<uint64_t>(h->frames);
    owned dst;
    if (!(dst.p = std::malloc(count * 3 * bytes_out))) return fail(msg, n, SARCO_DCM_NOMEM, path, "out of memory for the pixel data");
    for (uint64_t i = 0; i < count; i++) {
        int64_t v = h->bits_allocated == 16 ? static_cast<const uint16_t *>(idx)[i] : static_cast<const unsigned char *>(idx)[i];
        for (int c = 0; c < 3; c++) {
            int64_t k = v - first[c];
            k = k < 0 ? 0 : k >= entries[c] ? entries[c] - 1 : k;
            if (bytes_out == 2) {
                const unsigned char *e = reinterpret_cast<const unsigned char *>(data[c].data()) + 2 * k;
                static_cast<uint16_t *>(dst.p)[3 * i + c] = static_cast<uint16_t>(e[0] | e[1] << 8);
            } else {
                static_cast<unsigned char *>(dst.p)[3 * i + c] = static_cast<unsigned char>(data[c][k]);
            }
        }
    }
    out->data = dst.p;
    dst.p = nullptr;
    out->bytes = count * 3 * bytes_out;
    out->spp = 3, out->bits_allocated = static_cast<int64_t>(8 * bytes_out), out->planar = 0, out->pixel_rep = 0;
    copy(out->photometric, sizeof out->photometric, "RGB");
    return SARCO_DCM_OK;
}

// RLE Lossless (PS3.5 Annex G), decoded here: GDCM 3.0.21's RLE codec reads out of bounds on damaged
// streams (found by test_dicom's byte flips). One fragment per frame; each starts with a 64-byte
// header (segment count, 15 offsets); segment k holds byte k of the samples, most significant first,
// sample after sample, PackBits-coded. Output: planar (per frame: plane after plane), host order.
int decode_rle(const char *path, const gdcm::SequenceOfFragments &sq, const sarco_dcm_header *h, void *dst, char *msg,
               size_t n) {
    const uint64_t bpp = static_cast<uint64_t>(h->bits_allocated / 8), plane = static_cast<uint64_t>(h->rows * h->cols);
    const uint64_t nseg = static_cast<uint64_t>(h->spp) * bpp;
    if (sq.GetNumberOfFragments() != static_cast<size_t>(h->frames))
        return fail(msg, n, SARCO_DCM_BAD, path, "RLE: the number of fragments is not the number of frames");
    std::vector<unsigned char> seg(plane);
    for (int64_t fr = 0; fr < h->frames; fr++) {
        const gdcm::ByteValue *bv = sq.GetFragment(static_cast<unsigned>(fr)).GetByteValue();
        if (!bv || !bv->GetPointer() || bv->GetLength() < 64) return fail(msg, n, SARCO_DCM_BAD, path, "RLE: a frame without its header");
        const unsigned char *b = reinterpret_cast<const unsigned char *>(bv->GetPointer());
        const uint64_t len = bv->GetLength();
        auto u32 = [b](uint64_t at) { return uint64_t(b[at]) | uint64_t(b[at + 1]) << 8 | uint64_t(b[at + 2]) << 16 | uint64_t(b[at + 3]) << 24; };
        if (u32(0) != nseg) return fail(msg, n, SARCO_DCM_BAD, path, "RLE: the segment count does not match the pixel format");
        for (uint64_t sgi = 0; sgi < nseg; sgi++) {
            uint64_t at = u32(4 + 4 * sgi), end = sgi + 1 < nseg ? u32(8 + 4 * sgi) : len;
            if (at < 64 || at > end || end > len) return fail(msg, n, SARCO_DCM_BAD, path, "RLE: a segment offset is out of the frame");
            uint64_t o = 0;
            while (o < plane && at < end) {
                int c = static_cast<signed char>(b[at++]);
                if (c >= 0) {
                    uint64_t k = static_cast<uint64_t>(c) + 1;
                    if (k > end - at || k > plane - o) return fail(msg, n, SARCO_DCM_BAD, path, "RLE: a literal run past its segment");
                    std::memcpy(&seg[o], b + at, k);
                    at += k, o += k;
                } else if (c != -128) {
                    uint64_t k = static_cast<uint64_t>(1 - c);
                    if (at >= end || k > plane - o) return fail(msg, n, SARCO_DCM_BAD, path, "RLE: a repeat run past its segment");
                    std::memset(&seg[o], b[at++], k);
                    o += k;
                }
            }
            if (o != plane) return fail(msg, n, SARCO_DCM_BAD, path, "RLE: a segment decodes to too few bytes (truncated)");
            const uint64_t sample = sgi / bpp, byte = bpp - 1 - sgi % bpp; // little-endian byte index in the word
            unsigned char *out = static_cast<unsigned char *>(dst) + (static_cast<uint64_t>(fr) * nseg / bpp * plane + sample * plane) * bpp;
            for (uint64_t i = 0; i < plane; i++) out[i * bpp + byte] = seg[i];
        }
    }
    return SARCO_DCM_OK;
}

// Before a codec runs: every fragment that starts a JPEG (SOI) or JPEG 2000 (SOC + SIZ) codestream
// must declare the header's columns, rows, components and at most BitsAllocated bits. GDCM copies a
// decoded image into a buffer sized from the DICOM header, and a codestream that says otherwise
// corrupts the heap (found by test_dicom's byte flips on a JPEG 2000 file).
int check_codestreams(const char *path, const gdcm::SequenceOfFragments &sq, const sarco_dcm_header *h, char *msg,
                      size_t n) {
    size_t nf = sq.GetNumberOfFragments(), starts = 0;
    for (size_t i = 0; i < nf; i++) {
        const gdcm::ByteValue *bv = sq.GetFragment(i).GetByteValue();
        if (!bv || !bv->GetPointer()) continue;
        const unsigned char *b = reinterpret_cast<const unsigned char *>(bv->GetPointer());
        const uint64_t len = bv->GetLength();
        auto be16 = [b](uint64_t at) { return uint64_t(b[at]) << 8 | b[at + 1]; };
        auto be32 = [b](uint64_t at) { return uint64_t(b[at]) << 24 | uint64_t(b[at + 1]) << 16 | uint64_t(b[at + 2]) << 8 | b[at + 3]; };
        uint64_t w = 0, hgt = 0, comps = 0, bits = 0;
        bool found = false;
        if (len >= 4 && b[0] == 0xff && b[1] == 0xd8) { // JPEG / JPEG-LS: walk markers to the SOF
            uint64_t at = 2;
            while (at + 4 <= len && b[at] == 0xff) {
                unsigned m = b[at + 1];
                if (m == 0xff) { at++; continue; }
                uint64_t l = be16(at + 2);
                bool sof = (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) || m == 0xf7;
                if (sof) {
                    if (at + 10 > len || l < 8) break;
                    bits = b[at + 4], hgt = be16(at + 5), w = be16(at + 7), comps = b[at + 9];
                    found = true;
                    break;
                }
                if (m == 0xda || l < 2) break;
                at += 2 + l;
            }
            if (!found) return fail(msg, n, SARCO_DCM_BAD, path, "a JPEG fragment without a frame header (SOF)");
        } else if (len >= 4 && b[0] == 0xff && b[1] == 0x4f && b[2] == 0xff && b[3] == 0x51) { // J2K: SOC, SIZ
            if (len < 4 + 38 + 3) return fail(msg, n, SARCO_DCM_BAD, path, "a JPEG 2000 SIZ marker past the fragment");
            uint64_t xs = be32(8), ys = be32(12), xo = be32(16), yo = be32(20);
            comps = be16(40);
            if (xo > xs || yo > ys || len < 42 + 3 * comps) return fail(msg, n, SARCO_DCM_BAD, path, "a malformed JPEG 2000 SIZ marker");
            w = xs - xo, hgt = ys - yo;
            for (uint64_t c = 0; c < comps; c++) {
                uint64_t sb = (b[42 + 3 * c] & 0x7f) + 1;
                if (b[43 + 3 * c] != 1 || b[44 + 3 * c] != 1)
                    return fail(msg, n, SARCO_DCM_UNSUPPORTED, path, "JPEG 2000 with subsampled components");
                bits = sb > bits ? sb : bits;
            }
            found = true;
        } else if (len >= 12 && !std::memcmp(b + 4, "jP  ", 4)) {
            return fail(msg, n, SARCO_DCM_UNSUPPORTED, path, "JPEG 2000 in a JP2 file wrapper");
        }
        if (!found) continue; // a continuation fragment
        starts++;
        if (w != static_cast<uint64_t>(h->cols) || hgt != static_cast<uint64_t>(h->rows) ||
            comps != static_cast<uint64_t>(h->spp) || bits < 2 || bits > static_cast<uint64_t>(h->bits_allocated))
            return fail(msg, n, SARCO_DCM_BAD, path,
                        "a compressed frame's size, components or bit depth differ from the DICOM header");
    }
    if (starts != static_cast<size_t>(h->frames))
        return fail(msg, n, SARCO_DCM_BAD, path, "the number of compressed frames is not NumberOfFrames");
    return SARCO_DCM_OK;
}

int decode(const char *path, const sarco_dcm_header *h, uint64_t max_bytes, sarco_dcm_pixels *out, char *msg,
           size_t n) {
    std::memset(out, 0, sizeof *out);
    // what the header must say before any codec sees it (the C side checked rows, cols, frames, caps)
    const bool palette = !std::strcmp(h->photometric, "PALETTE COLOR");
    const bool ybr422 = !std::strcmp(h->photometric, "YBR_FULL_422");
    gdcm::PhotometricInterpretation::PIType pit = gdcm::PhotometricInterpretation::GetPIType(h->photometric);
    if (pit == gdcm::PhotometricInterpretation::UNKNOWN || pit == gdcm::PhotometricInterpretation::PI_END)
        return fail(msg, n, SARCO_DCM_UNSUPPORTED, path, "an unknown PhotometricInterpretation");
    if ((h->bits_allocated != 8 && h->bits_allocated != 16 && h->bits_allocated != 32) || h->bits_stored < 1 ||
        h->bits_stored > h->bits_allocated || (h->high_bit >= 0 && h->high_bit != h->bits_stored - 1) ||
        (h->pixel_rep != 0 && h->pixel_rep != 1) || (h->spp != 1 && h->spp != 3) ||
        (h->spp == 3 && h->planar != 0 && h->planar != 1) ||
        (gdcm::PhotometricInterpretation(pit).GetSamplesPerPixel() != static_cast<unsigned short>(h->spp)))
        return fail(msg, n, SARCO_DCM_BAD, path,
                    "inconsistent pixel description (BitsAllocated/BitsStored/HighBit/PixelRepresentation/"
                    "SamplesPerPixel/PlanarConfiguration/PhotometricInterpretation)");
    gdcm::Reader r;
    r.SetFileName(path);
    if (!r.Read()) return fail(msg, n, SARCO_DCM_BAD, path, "GDCM cannot read the file (truncated or corrupt)");
    const gdcm::File &f = r.GetFile();
    const gdcm::DataSet &ds = f.GetDataSet();
    const gdcm::TransferSyntax &ts = f.GetHeader().GetDataSetTransferSyntax();
    gdcm::Tag pt(0x7fe0, 0x0010);
    if (!ds.FindDataElement(pt) || ds.GetDataElement(pt).IsEmpty())
        return fail(msg, n, SARCO_DCM_BAD, path, "no pixel data");
    const gdcm::DataElement &pd = ds.GetDataElement(pt);
    const uint64_t bpp = static_cast<uint64_t>(h->bits_allocated / 8);
    const uint64_t samples = static_cast<uint64_t>(h->rows) * static_cast<uint64_t>(h->cols) *
                             static_cast<uint64_t>(h->frames) * static_cast<uint64_t>(h->spp);
    uint64_t need = samples * bpp;
    if (need > max_bytes || need * (palette ? 3 : 1) > max_bytes)
        return fail(msg, n, SARCO_DCM_BAD, path, "the decoded pixel data is past the cap");
    out->rows = h->rows, out->cols = h->cols, out->frames = h->frames;
    out->spp = h->spp, out->bits_allocated = h->bits_allocated, out->planar = h->planar < 0 ? 0 : h->planar;
    out->pixel_rep = h->pixel_rep;
    copy(out->photometric, sizeof out->photometric, h->photometric);
    owned buf;
    if (!ts.IsEncapsulated()) {
        const gdcm::ByteValue *bv = pd.GetByteValue();
        if (!bv || !bv->GetPointer()) return fail(msg, n, SARCO_DCM_BAD, path, "no pixel data");
        const unsigned char *src = reinterpret_cast<const unsigned char *>(bv->GetPointer());
        if (ybr422) return expand_422(path, src, bv->GetLength(), h, out, msg, n);
        if (bv->GetLength() < need) return fail(msg, n, SARCO_DCM_BAD, path, "the pixel data is truncated");
        if (!(buf.p = std::malloc(need))) return fail(msg, n, SARCO_DCM_NOMEM, path, "out of memory for the pixel data");
        std::memcpy(buf.p, src, need);
        // (GDCM has already turned Explicit VR Big Endian OW values into host order)
    } else {
        if (!pd.GetSequenceOfFragments()) return fail(msg, n, SARCO_DCM_BAD, path, "compressed pixel data without fragments");
        if (ts == gdcm::TransferSyntax::RLELossless) {
            if (ybr422) return fail(msg, n, SARCO_DCM_UNSUPPORTED, path, "RLE with YBR_FULL_422");
            if (!(buf.p = std::malloc(need))) return fail(msg, n, SARCO_DCM_NOMEM, path, "out of memory for the pixel data");
            int rc = decode_rle(path, *pd.GetSequenceOfFragments(), h, buf.p, msg, n);
            if (rc != SARCO_DCM_OK) return rc;
            out->planar = 1;
            if (palette) return apply_palette(path, ds, h, buf.p, out, msg, n);
            out->data = buf.p;
            buf.p = nullptr;
            out->bytes = need;
            return SARCO_DCM_OK;
        }
        if (int rc = check_codestreams(path, *pd.GetSequenceOfFragments(), h, msg, n)) return rc;
        gdcm::Image img;
        img.SetNumberOfDimensions(h->frames > 1 ? 3 : 2);
        img.SetDimension(0, static_cast<unsigned>(h->cols));
        img.SetDimension(1, static_cast<unsigned>(h->rows));
        if (h->frames > 1) img.SetDimension(2, static_cast<unsigned>(h->frames));
        img.SetPixelFormat(gdcm::PixelFormat(static_cast<unsigned short>(h->spp), static_cast<unsigned short>(h->bits_allocated),
                                             static_cast<unsigned short>(h->bits_stored),
                                             static_cast<unsigned short>(h->bits_stored - 1),
                                             static_cast<unsigned short>(h->pixel_rep)));
        img.SetPhotometricInterpretation(gdcm::PhotometricInterpretation(pit));
        img.SetPlanarConfiguration(h->spp == 3 ? static_cast<unsigned>(out->planar) : 0);
        img.SetTransferSyntax(ts);
        img.SetDataElement(pd);
        unsigned long len = img.GetBufferLength();
        if (len != need && !(ybr422 && len == need)) return fail(msg, n, SARCO_DCM_BAD, path, "the image size does not match its header");
        if (!(buf.p = std::malloc(len))) return fail(msg, n, SARCO_DCM_NOMEM, path, "out of memory for the pixel data");
        if (!img.GetBuffer(static_cast<char *>(buf.p)))
            return fail(msg, n, SARCO_DCM_BAD, path, "the compressed pixel data cannot be decoded (truncated or corrupt)");
        const char *now = gdcm::PhotometricInterpretation::GetPIString(img.GetPhotometricInterpretation());
        copy(out->photometric, sizeof out->photometric, now ? now : "");
        out->planar = img.GetPlanarConfiguration();
    }
    if (palette) return apply_palette(path, ds, h, buf.p, out, msg, n);
    std::string p = out->photometric;
    while (!p.empty() && p.back() == ' ') p.pop_back();
    copy(out->photometric, sizeof out->photometric, p);
    out->data = buf.p;
    buf.p = nullptr;
    out->bytes = need;
    return SARCO_DCM_OK;
}

} // namespace

extern "C" int sarco_dcm_read_header(const char *path, sarco_dcm_header *h, char *msg, size_t msg_size) {
    quiet();
    try {
        return read_header(path, h, msg, msg_size);
    } catch (const std::bad_alloc &) {
        say(msg, msg_size, "%s: out of memory reading the header", path);
        return SARCO_DCM_NOMEM;
    } catch (...) {
        say(msg, msg_size, "%s: GDCM failed on the header (corrupt file)", path);
        return SARCO_DCM_BAD;
    }
}

extern "C" int sarco_dcm_decode(const char *path, const sarco_dcm_header *h, uint64_t max_bytes,
                                sarco_dcm_pixels *out, char *msg, size_t msg_size) {
    quiet();
    try {
        return decode(path, h, max_bytes, out, msg, msg_size);
    } catch (const std::bad_alloc &) {
        say(msg, msg_size, "%s: out of memory decoding the pixel data", path);
        return SARCO_DCM_NOMEM;
    } catch (...) {
        say(msg, msg_size, "%s: GDCM failed on the pixel data (corrupt file)", path);
        return SARCO_DCM_BAD;
    }
}
