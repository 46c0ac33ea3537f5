// Megatron-LM mmap indexed dataset (.bin tokens + .idx index): writer, merge and validation.
//
// .idx layout (little-endian, byte-compatible with megatron/core/datasets/indexed_dataset.py):
//   magic      9 bytes  "MMIDIDX\0\0"
//   version    uint64   1
//   dtype code uint8    1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16
//   S          uint64   sequence count
//   D          uint64   document-index count (documents + 1: it starts with 0)
//   lengths    int32[S] tokens per sequence
//   pointers   int64[S] byte offset of each sequence in .bin
//   documents  int64[D] 0, then one past each document's last sequence
// The arrays are not aligned (the header is 34 bytes), so every read here goes through memcpy.
//
// Everything read from disk is checked before it is used: a damaged file raises
// megapmc._C.IndexedDatasetError (a ValueError) naming the file and the field, never crashes.
#include "registry.h"

#include <fcntl.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kVersion = 1;
constexpr uint64_t kHeaderSize = 9 + 8 + 1 + 8 + 8;  // 34 bytes
constexpr size_t kCopyChunk = size_t(8) << 20;

// Bad content in a dataset file; surfaces in Python as IndexedDatasetError(ValueError).
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The operating system refused a read or write; surfaces as OSError.
struct SystemError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw FormatError(path + ": " + what);
}
[[noreturn]] void fail_errno(const std::string& action, const std::string& path) {
  throw SystemError("cannot " + action + " " + path + ": " + std::strerror(errno));
}

// Item size in bytes for each Megatron dtype code, 0 for an unknown code.
int64_t item_size(int code) {
  switch (code) {
    case 1: case 2: return 1;
    case 3: case 8: return 2;
    case 4: case 7: return 4;
    case 5: case 6: return 8;
    default: return 0;
  }
}

// numpy kind character ('u', 'i', 'f') for each dtype code, matching item_size().
char dtype_kind(int code) {
  switch (code) {
    case 1: case 8: return 'u';
    case 6: case 7: return 'f';
    default: return 'i';
  }
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Read-only memory map of a whole file; an empty file maps to nothing.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail_errno("open", path);
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      ::close(fd_);
      fail_errno("stat", path);
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        ::close(fd_);
        fail_errno("mmap", path);
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  const uint8_t* data_ = nullptr;
};

uint64_t file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail_errno("stat", path);
  return static_cast<uint64_t>(st.st_size);
}

struct IndexHeader {
  int dtype_code = 0;
  int64_t itemsize = 0;
  uint64_t sequence_count = 0;
  uint64_t document_count = 0;
  uint64_t lengths_offset = 0;
  uint64_t pointers_offset = 0;
  uint64_t documents_offset = 0;
};

// Parse and check the header and that the file is exactly as long as the header says.
IndexHeader parse_header(const uint8_t* data, uint64_t size, const std::string& path) {
  if (size < kHeaderSize) {
    fail(path, "index is " + std::to_string(size) + " bytes, shorter than the " +
                   std::to_string(kHeaderSize) + "-byte header (truncated file?)");
  }
  if (std::memcmp(data, kMagic, sizeof(kMagic)) != 0) {
    fail(path, "bad magic: not a Megatron mmap indexed dataset index (expected \"MMIDIDX\\0\\0\")");
  }
  const uint64_t version = load<uint64_t>(data + 9);
  if (version != kVersion) {
    fail(path, "unsupported index version " + std::to_string(version) + " (only version 1 is known)");
  }
  IndexHeader h;
  h.dtype_code = data[17];
  h.itemsize = item_size(h.dtype_code);
  if (h.itemsize == 0) fail(path, "unknown dtype code " + std::to_string(h.dtype_code));
  h.sequence_count = load<uint64_t>(data + 18);
  h.document_count = load<uint64_t>(data + 26);
  // Bound the counts before multiplying so that the size arithmetic cannot overflow.
  const uint64_t limit = size / 4 + 1;
  if (h.sequence_count > limit || h.document_count > limit) {
    fail(path, "header counts (" + std::to_string(h.sequence_count) + " sequences, " +
                   std::to_string(h.document_count) + " document indices) do not fit in a " +
                   std::to_string(size) + "-byte file (truncated or corrupt)");
  }
  h.lengths_offset = kHeaderSize;
  h.pointers_offset = h.lengths_offset + 4 * h.sequence_count;
  h.documents_offset = h.pointers_offset + 8 * h.sequence_count;
  const uint64_t expected = h.documents_offset + 8 * h.document_count;
  if (size != expected) {
    fail(path, "index is " + std::to_string(size) + " bytes but its header (" +
                   std::to_string(h.sequence_count) + " sequences, " + std::to_string(h.document_count) +
                   " document indices) needs " + std::to_string(expected) +
                   (size < expected ? " (truncated file)" : " (trailing bytes: corrupt header?)"));
  }
  if (h.document_count == 0) fail(path, "document index is empty; it must start with 0");
  return h;
}

// Byte pointers from sequence lengths, in int64 all the way (old merges overflowed at 4 GiB).
void compute_pointers(const uint8_t* lengths_raw, uint64_t n, int64_t itemsize, int64_t start,
                      int64_t* out, const std::string& path) {
  int64_t ptr = start;
  for (uint64_t i = 0; i < n; ++i) {
    const int32_t len = load<int32_t>(lengths_raw + 4 * i);
    if (len < 0) fail(path, "sequence " + std::to_string(i) + " has negative length " + std::to_string(len));
    out[i] = ptr;
    const int64_t bytes = int64_t(len) * itemsize;
    if (ptr > std::numeric_limits<int64_t>::max() - bytes) fail(path, "byte pointers overflow int64");
    ptr += bytes;
  }
}

// Full check of an index against its data file; returns the header.
IndexHeader validate(const std::string& idx_path, const std::string& bin_path) {
  MappedFile idx(idx_path);
  const IndexHeader h = parse_header(idx.data(), idx.size(), idx_path);
  const uint8_t* lengths = idx.data() + h.lengths_offset;
  const uint8_t* pointers = idx.data() + h.pointers_offset;
  const uint8_t* documents = idx.data() + h.documents_offset;
  int64_t expected_ptr = 0;
  for (uint64_t i = 0; i < h.sequence_count; ++i) {
    const int32_t len = load<int32_t>(lengths + 4 * i);
    if (len < 0) fail(idx_path, "sequence " + std::to_string(i) + " has negative length " + std::to_string(len));
    const int64_t ptr = load<int64_t>(pointers + 8 * i);
    if (ptr != expected_ptr) {
      fail(idx_path, "sequence " + std::to_string(i) + " byte pointer is " + std::to_string(ptr) +
                         " but the lengths before it put it at " + std::to_string(expected_ptr) +
                         " (corrupt lengths or pointers)");
    }
    const int64_t bytes = int64_t(len) * h.itemsize;  // < 2^34: cannot overflow
    if (expected_ptr > std::numeric_limits<int64_t>::max() - bytes) fail(idx_path, "byte pointers overflow int64");
    expected_ptr += bytes;
  }
  int64_t prev = -1;
  for (uint64_t d = 0; d < h.document_count; ++d) {
    const int64_t v = load<int64_t>(documents + 8 * d);
    if (d == 0 && v != 0) fail(idx_path, "document index must start with 0, found " + std::to_string(v));
    if (v < prev || v > int64_t(h.sequence_count)) {
      fail(idx_path, "document index entry " + std::to_string(d) + " is " + std::to_string(v) +
                         " (must be non-decreasing and at most the sequence count " +
                         std::to_string(h.sequence_count) + ")");
    }
    prev = v;
  }
  if (prev != int64_t(h.sequence_count)) {
    fail(idx_path, "last document index entry is " + std::to_string(prev) + ", expected the sequence count " +
                       std::to_string(h.sequence_count));
  }
  const uint64_t bin_size = file_size(bin_path);
  if (bin_size != uint64_t(expected_ptr)) {
    fail(bin_path, "data file is " + std::to_string(bin_size) + " bytes but its index " + idx_path +
                       " describes " + std::to_string(expected_ptr) +
                       (bin_size < uint64_t(expected_ptr) ? " (truncated data file)" : " (extra bytes)"));
  }
  return h;
}

py::dict header_dict(const IndexHeader& h) {
  py::dict d;
  d["dtype_code"] = h.dtype_code;
  d["itemsize"] = h.itemsize;
  d["sequence_count"] = h.sequence_count;
  d["document_count"] = h.document_count;
  d["lengths_offset"] = h.lengths_offset;
  d["pointers_offset"] = h.pointers_offset;
  d["documents_offset"] = h.documents_offset;
  return d;
}

// Append-only file with a large user-space buffer and error-checked writes.
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_errno("create", path_);
    buf_.reserve(kCopyChunk);
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const void* data, size_t n) {
    if (buf_.size() + n > kCopyChunk) flush();
    if (n >= kCopyChunk) {
      write_fd(static_cast<const uint8_t*>(data), n);
    } else {
      const auto* p = static_cast<const uint8_t*>(data);
      buf_.insert(buf_.end(), p, p + n);
    }
    bytes_ += n;
  }

  // Append a whole file; the kernel copies it (copy_file_range) where it can.
  void append_file(const std::string& src_path, uint64_t expected) {
    flush();
    int src = ::open(src_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (src < 0) fail_errno("open", src_path);
    uint64_t done = 0;
    bool kernel_copy = true;
    std::vector<uint8_t> tmp;
    while (done < expected) {
      const size_t want = size_t(std::min<uint64_t>(expected - done, uint64_t(1) << 30));
      ssize_t got = -1;
      if (kernel_copy) {
        got = ::copy_file_range(src, nullptr, fd_, nullptr, want, 0);
        if (got < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
          kernel_copy = false;
          continue;
        }
      } else {
        tmp.resize(std::min(want, kCopyChunk));
        got = ::read(src, tmp.data(), tmp.size());
        if (got > 0) write_fd(tmp.data(), size_t(got));
      }
      if (got < 0) {
        ::close(src);
        fail_errno("copy from", src_path);
      }
      if (got == 0) {
        ::close(src);
        fail(src_path, "data file ended after " + std::to_string(done) + " of " + std::to_string(expected) +
                           " bytes while merging (truncated?)");
      }
      done += uint64_t(got);
    }
    ::close(src);
    bytes_ += expected;
  }

  void flush() {
    if (!buf_.empty()) write_fd(buf_.data(), buf_.size());
    buf_.clear();
  }

  void close() {
    flush();
    if (::fdatasync(fd_) != 0 && errno != EINVAL) fail_errno("sync", path_);
    if (::close(fd_) != 0) fail_errno("close", path_);
    fd_ = -1;
  }

  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  void write_fd(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail_errno("write", path_);
      }
      p += w;
      n -= size_t(w);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<uint8_t> buf_;
  uint64_t bytes_ = 0;
};

// Writes a .bin/.idx pair to the paths it is given (the Python side passes temporary names and
// renames them once finalize() returns). Sequence lengths and document boundaries stay in memory
// (12 bytes per sequence); pointers are computed at finalize.
class Writer {
 public:
  Writer(const std::string& bin_path, std::string idx_path, int dtype_code)
      : bin_(bin_path), idx_path_(std::move(idx_path)), dtype_code_(dtype_code) {
    itemsize_ = item_size(dtype_code);
    if (itemsize_ == 0) throw py::value_error("unknown dtype code " + std::to_string(dtype_code));
    documents_.push_back(0);
  }

  void add_item(const py::array& tokens) {
    check_open();
    const char* data = checked_data(tokens, "tokens");
    append_sequence(data, tokens.size());
  }

  void end_document() {
    check_open();
    documents_.push_back(int64_t(lengths_.size()));
  }

  void add_document(const py::array& tokens) {
    add_item(tokens);
    end_document();
  }

  // Many documents in one call: `tokens` holds them back to back, `lengths` their sizes.
  void add_documents(const py::array& tokens, const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& lengths) {
    check_open();
    const char* data = checked_data(tokens, "tokens");
    if (lengths.ndim() != 1) throw py::value_error("lengths must be 1-D");
    const int64_t* lens = lengths.data();
    const py::ssize_t n = lengths.size();
    int64_t total = 0;
    for (py::ssize_t i = 0; i < n; ++i) {
      if (lens[i] < 0 || lens[i] > std::numeric_limits<int32_t>::max()) {
        throw py::value_error("document length " + std::to_string(lens[i]) + " out of range [0, 2^31)");
      }
      total += lens[i];
    }
    if (total != tokens.size()) {
      throw py::value_error("lengths sum to " + std::to_string(total) + " but tokens has " +
                            std::to_string(tokens.size()) + " elements");
    }
    {
      py::gil_scoped_release nogil;
      bin_.write(data, size_t(total) * size_t(itemsize_));
    }
    lengths_.reserve(lengths_.size() + size_t(n));
    for (py::ssize_t i = 0; i < n; ++i) {
      lengths_.push_back(int32_t(lens[i]));
      documents_.push_back(int64_t(lengths_.size()));
    }
  }

  // Append every sequence and document of an existing dataset without re-tokenising.
  void add_index(const std::string& prefix) {
    check_open();
    const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
    const IndexHeader h = validate(idx_path, bin_path);
    if (h.dtype_code != dtype_code_) {
      fail(idx_path, "dtype code " + std::to_string(h.dtype_code) + " differs from the output's " +
                         std::to_string(dtype_code_) + "; shards to merge must share one dtype");
    }
    MappedFile idx(idx_path);
    const uint8_t* lengths = idx.data() + h.lengths_offset;
    const uint8_t* documents = idx.data() + h.documents_offset;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < h.sequence_count; ++i) bytes += uint64_t(load<int32_t>(lengths + 4 * i)) * itemsize_;
    {
      py::gil_scoped_release nogil;
      bin_.append_file(bin_path, bytes);
    }
    const int64_t base = int64_t(lengths_.size());
    lengths_.reserve(lengths_.size() + h.sequence_count);
    for (uint64_t i = 0; i < h.sequence_count; ++i) lengths_.push_back(load<int32_t>(lengths + 4 * i));
    for (uint64_t d = 1; d < h.document_count; ++d) documents_.push_back(base + load<int64_t>(documents + 8 * d));
  }

  void finalize() {
    check_open();
    if (documents_.back() != int64_t(lengths_.size())) {
      throw py::value_error("finalize() with sequences after the last end_document(); call end_document() first");
    }
    finalized_ = true;
    py::gil_scoped_release nogil;
    bin_.close();
    OutFile idx(idx_path_);
    idx.write(kMagic, sizeof(kMagic));
    idx.write(&kVersion, 8);
    const uint8_t code = uint8_t(dtype_code_);
    idx.write(&code, 1);
    const uint64_t s = lengths_.size(), d = documents_.size();
    idx.write(&s, 8);
    idx.write(&d, 8);
    idx.write(lengths_.data(), 4 * s);
    // Pointers are streamed in blocks so that finalize needs no extra 8 bytes per sequence.
    std::vector<int64_t> block;
    int64_t start = 0;
    for (uint64_t i = 0; i < s; i += (1u << 20)) {
      const uint64_t n = std::min<uint64_t>(1u << 20, s - i);
      block.resize(n);
      compute_pointers(reinterpret_cast<const uint8_t*>(lengths_.data() + i), n, itemsize_, start, block.data(),
                       idx_path_);
      start = block.back() + int64_t(lengths_[i + n - 1]) * itemsize_;
      idx.write(block.data(), 8 * n);
    }
    idx.write(documents_.data(), 8 * d);
    idx.close();
  }

  uint64_t sequence_count() const { return lengths_.size(); }
  uint64_t document_count() const { return documents_.size() - 1; }
  uint64_t num_tokens() const { return bin_.bytes() / uint64_t(itemsize_); }
  int dtype_code() const { return dtype_code_; }

 private:
  void check_open() const {
    if (finalized_) throw py::value_error("builder for " + idx_path_ + " is already finalized");
  }

  const char* checked_data(const py::array& a, const char* name) const {
    if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be a 1-D array");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
    if (a.itemsize() != itemsize_ || a.dtype().kind() != dtype_kind(dtype_code_)) {
      throw py::value_error(std::string(name) + " dtype " + std::string(py::str(a.dtype())) +
                            " does not match the dataset's dtype code " + std::to_string(dtype_code_));
    }
    return static_cast<const char*>(a.data());
  }

  void append_sequence(const char* data, py::ssize_t n) {
    if (n > std::numeric_limits<int32_t>::max()) {
      throw py::value_error("sequence of " + std::to_string(n) + " tokens exceeds the format's int32 length");
    }
    {
      py::gil_scoped_release nogil;
      bin_.write(data, size_t(n) * size_t(itemsize_));
    }
    lengths_.push_back(int32_t(n));
  }

  OutFile bin_;
  std::string idx_path_;
  int dtype_code_;
  int64_t itemsize_;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> documents_;
  bool finalized_ = false;
};

// Position of the first token outside [0, vocab_size), or -1.
template <typename T>
int64_t first_out_of_range(const uint8_t* data, uint64_t count, int64_t vocab_size) {
  for (uint64_t i = 0; i < count; ++i) {
    const T v = load<T>(data + sizeof(T) * i);
    if (int64_t(v) < 0 || int64_t(v) >= vocab_size) return int64_t(i);
  }
  return -1;
}

std::optional<std::pair<int64_t, int64_t>> find_token_out_of_range(const std::string& bin_path, int dtype_code,
                                                                   int64_t vocab_size) {
  MappedFile bin(bin_path);
  const int64_t isz = item_size(dtype_code);
  if (isz == 0 || dtype_kind(dtype_code) == 'f') throw py::value_error("token range check needs an integer dtype");
  const uint64_t count = bin.size() / uint64_t(isz);
  int64_t pos = -1;
  {
    py::gil_scoped_release nogil;
    switch (dtype_code) {
      case 1: pos = first_out_of_range<uint8_t>(bin.data(), count, vocab_size); break;
      case 2: pos = first_out_of_range<int8_t>(bin.data(), count, vocab_size); break;
      case 3: pos = first_out_of_range<int16_t>(bin.data(), count, vocab_size); break;
      case 4: pos = first_out_of_range<int32_t>(bin.data(), count, vocab_size); break;
      case 5: pos = first_out_of_range<int64_t>(bin.data(), count, vocab_size); break;
      case 8: pos = first_out_of_range<uint16_t>(bin.data(), count, vocab_size); break;
    }
  }
  if (pos < 0) return std::nullopt;
  int64_t value = 0;
  const uint8_t* p = bin.data() + uint64_t(pos) * uint64_t(isz);
  switch (dtype_code) {
    case 1: value = load<uint8_t>(p); break;
    case 2: value = load<int8_t>(p); break;
    case 3: value = load<int16_t>(p); break;
    case 4: value = load<int32_t>(p); break;
    case 5: value = load<int64_t>(p); break;
    case 8: value = load<uint16_t>(p); break;
  }
  return std::make_pair(pos, value);
}

}  // namespace

void register_indexed_dataset(py::module_& m) {
  py::register_exception<FormatError>(m, "IndexedDatasetError", PyExc_ValueError);
  py::register_exception<SystemError>(m, "IndexedDatasetIOError", PyExc_OSError);

  m.def("dtype_itemsize", &item_size, py::arg("dtype_code"),
        "Bytes per element of a Megatron dtype code (0 when the code is unknown).");

  m.def(
      "read_index_header",
      [](const std::string& idx_path) {
        MappedFile idx(idx_path);
        return header_dict(parse_header(idx.data(), idx.size(), idx_path));
      },
      py::arg("idx_path"), "Parse and size-check an .idx header; returns its fields and array offsets.");

  m.def(
      "validate_index",
      [](const std::string& idx_path, const std::string& bin_path) {
        IndexHeader h;
        {
          py::gil_scoped_release nogil;
          h = validate(idx_path, bin_path);
        }
        return header_dict(h);
      },
      py::arg("idx_path"), py::arg("bin_path"),
      "Check an .idx completely (header, lengths, contiguous pointers, document indices) against the "
      ".bin size; raises IndexedDatasetError naming the file and the problem.");

  m.def(
      "sequence_pointers",
      [](const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& lengths, int64_t itemsize) {
        py::array_t<int64_t> out(lengths.size());
        compute_pointers(reinterpret_cast<const uint8_t*>(lengths.data()), uint64_t(lengths.size()), itemsize, 0,
                         out.mutable_data(), "<lengths>");
        return out;
      },
      py::arg("lengths"), py::arg("itemsize"),
      "The int64 byte pointers the writer stores for these sequence lengths (exclusive prefix sum x itemsize).");

  m.def("find_token_out_of_range", &find_token_out_of_range, py::arg("bin_path"), py::arg("dtype_code"),
        py::arg("vocab_size"), "(token position, value) of the first token outside [0, vocab_size), or None.");

  py::class_<Writer>(m, "IndexedDatasetWriter",
                     "Appends token sequences to a .bin and writes the Megatron .idx at finalize().")
      .def(py::init<const std::string&, const std::string&, int>(), py::arg("bin_path"), py::arg("idx_path"),
           py::arg("dtype_code"))
      .def("add_item", &Writer::add_item, py::arg("tokens"))
      .def("end_document", &Writer::end_document)
      .def("add_document", &Writer::add_document, py::arg("tokens"))
      .def("add_documents", &Writer::add_documents, py::arg("tokens"), py::arg("lengths"))
      .def("add_index", &Writer::add_index, py::arg("prefix"))
      .def("finalize", &Writer::finalize)
      .def_property_readonly("sequence_count", &Writer::sequence_count)
      .def_property_readonly("document_count", &Writer::document_count)
      .def_property_readonly("num_tokens", &Writer::num_tokens)
      .def_property_readonly("dtype_code", &Writer::dtype_code);
}
