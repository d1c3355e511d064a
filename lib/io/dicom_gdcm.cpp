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

#include <sys/stat.h>

#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmImage.h>
#include <gdcmImageReader.h>
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

// Native YBR_FULL_422 (PS3.5 8.2.6: Y0 Y1 Cb Cr for each pair of pixels in a row), which GDCM passes
// through as stored: expanded here to YBR_FULL, each pair sharing its chroma.
int expand_422(const char *path, const gdcm::Image &img, int64_t rows, int64_t cols, int64_t frames,
               sarco_dcm_pixels *out, char *msg, size_t n) {
    const gdcm::ByteValue *bv = img.GetDataElement().GetByteValue();
    const gdcm::PixelFormat &pf = img.GetPixelFormat();
    if (pf.GetBitsAllocated() != 8 || pf.GetSamplesPerPixel() != 3 || cols % 2) {
        say(msg, n, "%s: uncompressed YBR_FULL_422 is read with 8 bits and an even number of columns only", path);
        return SARCO_DCM_UNSUPPORTED;
    }
    uint64_t pairs = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols / 2) * static_cast<uint64_t>(frames);
    if (!bv || !bv->GetPointer() || bv->GetLength() < pairs * 4) {
        say(msg, n, "%s: the pixel data is truncated", path);
        return SARCO_DCM_BAD;
    }
    unsigned char *dst = static_cast<unsigned char *>(std::malloc(pairs * 6));
    if (!dst) {
        say(msg, n, "%s: out of memory for the pixel data", path);
        return SARCO_DCM_NOMEM;
    }
    const unsigned char *src = reinterpret_cast<const unsigned char *>(bv->GetPointer());
    for (uint64_t i = 0; i < pairs; i++) {
        const unsigned char *q = src + 4 * i;
        unsigned char *d = dst + 6 * i;
        d[0] = q[0], d[1] = q[2], d[2] = q[3];
        d[3] = q[1], d[4] = q[2], d[5] = q[3];
    }
    out->data = dst;
    out->bytes = pairs * 6;
    out->rows = rows, out->cols = cols, out->frames = frames;
    out->spp = 3, out->bits_allocated = 8, out->planar = 0, out->pixel_rep = 0;
    copy(out->photometric, sizeof out->photometric, "YBR_FULL");
    return SARCO_DCM_OK;
}

// PALETTE COLOR through its three lookup tables, as pydicom's apply_color_lut: index - first mapped
// clamped to the table, entries of 8 or 16 bits kept at that depth (GDCM's own filter keeps only the
// high byte of 16-bit entries). Segmented palettes are not read.
int apply_palette(const char *path, const gdcm::DataSet &ds, const gdcm::Image &img, int64_t rows, int64_t cols,
                  int64_t frames, sarco_dcm_pixels *out, char *msg, size_t n) {
    const gdcm::PixelFormat &pf = img.GetPixelFormat();
    if (pf.GetSamplesPerPixel() != 1 || (pf.GetBitsAllocated() != 8 && pf.GetBitsAllocated() != 16)) {
        say(msg, n, "%s: a palette image must have one 8- or 16-bit sample per pixel", path);
        return SARCO_DCM_BAD;
    }
    if (ds.FindDataElement(gdcm::Tag(0x0028, 0x1221))) {
        say(msg, n, "%s: segmented palette colour lookup tables are not read", path);
        return SARCO_DCM_UNSUPPORTED;
    }
    int64_t entries[3], first[3], bits[3];
    std::string data[3];
    for (int c = 0; c < 3; c++) {
        std::string d = raw(ds, 0x0028, static_cast<uint16_t>(0x1101 + c));
        if (d.size() != 6) {
            say(msg, n, "%s: a palette lookup table descriptor is missing or malformed", path);
            return SARCO_DCM_BAD;
        }
        const unsigned char *b = reinterpret_cast<const unsigned char *>(d.data());
        entries[c] = b[0] | b[1] << 8;
        if (entries[c] == 0) entries[c] = 65536;
        first[c] = b[2] | b[3] << 8; // US or SS: both read as 0..65535 here, as first mapped values are
        bits[c] = b[4] | b[5] << 8;
        data[c] = raw(ds, 0x0028, static_cast<uint16_t>(0x1201 + c));
        if ((bits[c] != 8 && bits[c] != 16) || bits[c] != bits[0] ||
            data[c].size() < static_cast<size_t>(entries[c]) * (bits[c] == 16 ? 2 : 1)) {
            say(msg, n, "%s: a palette lookup table is shorter than its descriptor, or not 8/16-bit", path);
            return SARCO_DCM_BAD;
        }
    }
    const int64_t bytes_out = bits[0] == 16 ? 2 : 1;
    const uint64_t count = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) * static_cast<uint64_t>(frames);
    unsigned long len = img.GetBufferLength();
    if (len < count * (pf.GetBitsAllocated() / 8)) {
        say(msg, n, "%s: the pixel data is truncated", path);
        return SARCO_DCM_BAD;
    }
    std::string idx(len, '\0');
    if (!img.GetBuffer(&idx[0])) {
        say(msg, n, "%s: the pixel data cannot be decoded (truncated or corrupt)", path);
        return SARCO_DCM_BAD;
    }
    void *dst = std::malloc(count * 3 * bytes_out);
    if (!dst) {
        say(msg, n, "%s: out of memory for the pixel data", path);
        return SARCO_DCM_NOMEM;
    }
    for (uint64_t i = 0; i < count; i++) {
        int64_t v = pf.GetBitsAllocated() == 16 ? reinterpret_cast<const uint16_t *>(idx.data())[i]
                                                : static_cast<unsigned char>(idx[i]);
        for (int c = 0; c < 3; c++) {
            int64_t k = v - first[c];
            k = k < 0 ? 0 : k >= entries[c] ? entries[c] - 1 : k;
            if (bytes_out == 2) {
                const unsigned char *e = reinterpret_cast<const unsigned char *>(data[c].data()) + 2 * k;
                static_cast<uint16_t *>(dst)[3 * i + c] = static_cast<uint16_t>(e[0] | e[1] << 8);
            } else {
                static_cast<unsigned char *>(dst)[3 * i + c] = static_cast<unsigned char>(data[c][k]);
            }
        }
    }
    out->data = dst;
    out->bytes = count * 3 * bytes_out;
    out->rows = rows, out->cols = cols, out->frames = frames;
    out->spp = 3, out->bits_allocated = 8 * bytes_out, out->planar = 0, out->pixel_rep = 0;
    copy(out->photometric, sizeof out->photometric, "RGB");
    return SARCO_DCM_OK;
}

int decode(const char *path, const sarco_dcm_header *h, uint64_t max_bytes, sarco_dcm_pixels *out, char *msg,
           size_t n) {
    std::memset(out, 0, sizeof *out);
    gdcm::ImageReader r;
    r.SetFileName(path);
    if (!r.Read()) {
        say(msg, n, "%s: GDCM cannot read the image (no pixel data, truncated, or an unknown encoding)", path);
        return SARCO_DCM_BAD;
    }
    const gdcm::Image &img0 = r.GetImage();
    const unsigned int *d = img0.GetDimensions();
    unsigned nd = img0.GetNumberOfDimensions();
    int64_t cols = d[0], rows = d[1], frames = nd >= 3 ? d[2] : 1;
    if (rows != h->rows || cols != h->cols || frames != h->frames) {
        say(msg, n, "%s: the image's dimensions changed between reads", path);
        return SARCO_DCM_BAD;
    }
    const gdcm::Image *img = &img0;
    if (img0.GetPhotometricInterpretation() == gdcm::PhotometricInterpretation::PALETTE_COLOR)
        return apply_palette(path, r.GetFile().GetDataSet(), img0, rows, cols, frames, out, msg, n);
    unsigned long len = img->GetBufferLength();
    if (len == 0) {
        say(msg, n, "%s: no pixel data", path);
        return SARCO_DCM_BAD;
    }
    if (static_cast<uint64_t>(len) > max_bytes) {
        say(msg, n, "%s: the decoded pixel data is past the cap", path);
        return SARCO_DCM_BAD;
    }
    // Native (uncompressed) pixel data must hold what the header declares: GDCM zero-pads
    // a short value, which would make a truncated file look whole.
    int64_t bytes_per = (h->bits_allocated + 7) / 8;
    if (h->native_avail >= 0 && bytes_per > 0) {
        int64_t need = h->rows * h->cols * h->frames * h->spp * bytes_per;
        if (h->bits_allocated == 1) need = (h->rows * h->cols * h->frames + 7) / 8;
        if (!std::strcmp(h->photometric, "YBR_FULL_422")) need = need / 3 * 2;
        if (h->native_avail < need) {
            std::snprintf(msg, n, "%s: the pixel data is truncated (%lld bytes in the file, %lld declared)", path,
                          (long long)(h->native_avail < 0 ? 0 : h->native_avail), (long long)need);
            return SARCO_DCM_BAD;
        }
    }
    const gdcm::DataElement &pd = img->GetDataElement();
    if (img == &img0 && !h->encapsulated &&
        img0.GetPhotometricInterpretation() == gdcm::PhotometricInterpretation::YBR_FULL_422)
        return expand_422(path, img0, rows, cols, frames, out, msg, n);
    if (const gdcm::ByteValue *bv = pd.GetByteValue()) {
        if (img == &img0 && bv->GetLength() < len) {
            say(msg, n, "%s: the pixel data is truncated", path);
            return SARCO_DCM_BAD;
        }
    } else if (!pd.GetSequenceOfFragments()) {
        say(msg, n, "%s: no pixel data", path);
        return SARCO_DCM_BAD;
    }
    struct owned { // freed unless handed to the caller, also when GDCM throws
        void *p;
        ~owned() { std::free(p); }
    } buf{std::malloc(len)};
    if (!buf.p) {
        say(msg, n, "%s: out of memory for the pixel data", path);
        return SARCO_DCM_NOMEM;
    }
    if (!img->GetBuffer(static_cast<char *>(buf.p))) {
        say(msg, n, "%s: the pixel data cannot be decoded (truncated or corrupt)", path);
        return SARCO_DCM_BAD;
    }
    const gdcm::PixelFormat &pf = img->GetPixelFormat();
    out->data = buf.p;
    buf.p = nullptr;
    out->bytes = len;
    out->rows = rows;
    out->cols = cols;
    out->frames = frames;
    out->spp = pf.GetSamplesPerPixel();
    out->bits_allocated = pf.GetBitsAllocated();
    out->pixel_rep = pf.GetPixelRepresentation();
    out->planar = img->GetPlanarConfiguration();
    copy(out->photometric, sizeof out->photometric,
         gdcm::PhotometricInterpretation::GetPIString(img->GetPhotometricInterpretation()) ?
             gdcm::PhotometricInterpretation::GetPIString(img->GetPhotometricInterpretation()) : "");
    std::string p = out->photometric;
    while (!p.empty() && p.back() == ' ') p.pop_back();
    copy(out->photometric, sizeof out->photometric, p);
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
