// Index builders for the GPT and blended datasets: document index over epochs, sample index (samples of
// seq_length + 1 tokens that run across documents, Megatron's build_sample_idx semantics), per-epoch
// shuffle index, and the blending index that puts exact integer per-source counts in every global batch.
//
// Every input is checked before any loop touches memory: bad input raises ValueError, never a crash.
// The loops run without the GIL so that other Python threads (loader workers, other ranks' waits) go on.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "registry.h"

namespace py = pybind11;

namespace {

using i128 = __int128;

// Unbiased integer in [0, n) from a 64-bit Mersenne Twister (Lemire's multiply-shift with rejection).
// std::uniform_int_distribution is implementation-defined; this keeps indices identical across compilers.
inline uint64_t bounded(std::mt19937_64& rng, uint64_t n) {
  unsigned __int128 m = static_cast<unsigned __int128>(rng()) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(rng()) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

// Fisher-Yates from the top. The swap partners j are drawn kLookahead steps early (the same draws in the
// same order, so the permutation is unchanged) and their cache lines prefetched: large shuffles are
// bound by cache misses on data[j], not by the generator.
template <typename T>
void fisher_yates(T* data, int64_t n, std::mt19937_64& rng) {
  constexpr int64_t kLookahead = 16;
  int64_t ahead[kLookahead];
  const int64_t first = std::min<int64_t>(kLookahead, std::max<int64_t>(n - 1, 0));
  for (int64_t a = 0; a < first; ++a) {
    const int64_t i = n - 1 - a;
    ahead[a] = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(i) + 1));
    __builtin_prefetch(data + ahead[a]);
  }
  for (int64_t i = n - 1, a = 0; i > 0; --i, ++a) {
    const int64_t slot = a % kLookahead;
    const int64_t j = ahead[slot];
    const int64_t later = i - kLookahead;  // the step whose partner is drawn now
    if (later > 0) {
      ahead[slot] = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(later) + 1));
      __builtin_prefetch(data + ahead[slot]);
    }
    std::swap(data[i], data[j]);
  }
}

template <typename T>
const T* checked_1d(const py::array_t<T, py::array::c_style | py::array::forcecast>& a, const char* name) {
  if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be 1-D, got " + std::to_string(a.ndim()) + " dimensions");
  return a.data();
}

// ---------------------------------------------------------------------------------------------------------
// Document index: the split's documents once per epoch, each epoch shuffled on its own, so that every
// epoch is one full pass over the documents.
py::array_t<int32_t> build_document_index(py::array_t<int32_t, py::array::c_style | py::array::forcecast> documents,
                                          int64_t num_epochs, uint64_t seed) {
  const int32_t* docs = checked_1d(documents, "documents");
  const int64_t n = documents.shape(0);
  if (num_epochs < 1) throw py::value_error("num_epochs must be >= 1, got " + std::to_string(num_epochs));
  if (n == 0) throw py::value_error("documents is empty: the split holds no documents");
  if (n > INT64_MAX / num_epochs) throw py::value_error("documents x num_epochs overflows int64");
  for (int64_t i = 0; i < n; ++i)
    if (docs[i] < 0) throw py::value_error("documents[" + std::to_string(i) + "] is negative: " + std::to_string(docs[i]));
  py::array_t<int32_t> out(n * num_epochs);
  int32_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    std::mt19937_64 rng(seed);
    for (int64_t e = 0; e < num_epochs; ++e) {
      std::memcpy(o + e * n, docs, sizeof(int32_t) * n);
      fisher_yates(o + e * n, n, rng);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Sample index: row i = (position in doc_idx, token offset in that document) where sample i starts; sample i
// ends at row i+1 inclusive, so each sample holds seq_length + 1 tokens and consecutive samples share one
// token (the last input's label is the next sample's first input), as in Megatron's build_sample_idx.
template <typename Index>
py::array build_sample_index_impl(const int32_t* sizes, const int32_t* doc_idx, int64_t num_docs_in_index,
                                  int64_t seq_length, int64_t num_samples) {
  py::array_t<Index> out({num_samples + 1, static_cast<int64_t>(2)});
  Index* s = out.mutable_data();
  bool ran_out = false;
  int64_t tokens_seen = 0;
  {
    py::gil_scoped_release nogil;
    int64_t pos = 0;     // position in doc_idx
    int64_t offset = 0;  // token offset inside doc_idx[pos]
    s[0] = 0;
    s[1] = 0;
    for (int64_t i = 1; i <= num_samples && !ran_out; ++i) {
      int64_t remaining = seq_length + 1;
      while (remaining != 0) {
        // Documents come in shuffled order, so sizes[] is read at random: fetch a few documents ahead.
        if (pos + 16 < num_docs_in_index) __builtin_prefetch(sizes + doc_idx[pos + 16]);
        const int64_t doc_length = static_cast<int64_t>(sizes[doc_idx[pos]]) - offset;
        remaining -= doc_length;
        if (remaining <= 0) {
          // The sample ends inside this document; the -1 leaves its last token to start the next sample.
          offset += remaining + doc_length - 1;
          remaining = 0;
        } else {
          tokens_seen += doc_length;
          if (pos + 1 == num_docs_in_index) {
            ran_out = true;
            break;
          }
          ++pos;
          offset = 0;
        }
      }
      s[2 * i] = static_cast<Index>(pos);
      s[2 * i + 1] = static_cast<Index>(offset);
    }
  }
  if (ran_out)
    throw py::value_error("the document index holds too few tokens for " + std::to_string(num_samples) +
                          " samples of seq_length + 1 = " + std::to_string(seq_length + 1) + " tokens");
  return std::move(out);
}

py::array build_sample_index(py::array_t<int32_t, py::array::c_style | py::array::forcecast> sizes_arr,
                             py::array_t<int32_t, py::array::c_style | py::array::forcecast> doc_idx_arr,
                             int64_t seq_length, int64_t num_samples) {
  const int32_t* sizes = checked_1d(sizes_arr, "sizes");
  const int32_t* doc_idx = checked_1d(doc_idx_arr, "doc_idx");
  const int64_t num_sizes = sizes_arr.shape(0), n = doc_idx_arr.shape(0);
  if (seq_length < 1) throw py::value_error("seq_length must be >= 1, got " + std::to_string(seq_length));
  if (num_samples < 0) throw py::value_error("num_samples must be >= 0, got " + std::to_string(num_samples));
  if (n == 0) throw py::value_error("doc_idx is empty");
  int64_t total = 0;
  for (int64_t i = 0; i < num_sizes; ++i)
    if (sizes[i] < 0) throw py::value_error("sizes[" + std::to_string(i) + "] is negative: " + std::to_string(sizes[i]));
  for (int64_t i = 0; i < n; ++i) {
    if (doc_idx[i] < 0 || doc_idx[i] >= num_sizes)
      throw py::value_error("doc_idx[" + std::to_string(i) + "] = " + std::to_string(doc_idx[i]) +
                            " is outside [0, " + std::to_string(num_sizes) + ")");
    total += sizes[doc_idx[i]];
  }
  // Sample i needs tokens up to i * seq_length inclusive; check here so the loop never runs off the end.
  if (num_samples > 0 && (total - 1) / seq_length < num_samples)
    throw py::value_error("the document index holds " + std::to_string(total) + " tokens, enough for " +
                          std::to_string(total > 0 ? (total - 1) / seq_length : 0) + " samples of seq_length " +
                          std::to_string(seq_length) + ", but " + std::to_string(num_samples) + " were asked for");
  int64_t max_size = 0;
  for (int64_t i = 0; i < num_sizes; ++i) max_size = std::max<int64_t>(max_size, sizes[i]);
  if (n < INT32_MAX && max_size < INT32_MAX)
    return build_sample_index_impl<int32_t>(sizes, doc_idx, n, seq_length, num_samples);
  return build_sample_index_impl<int64_t>(sizes, doc_idx, n, seq_length, num_samples);
}

// ---------------------------------------------------------------------------------------------------------
// Shuffle index: a permutation of [0, boundaries[-1]) that shuffles each block [boundaries[j], boundaries[j+1])
// on its own (one block per epoch), so epochs stay whole passes and a partial last epoch is a random subset.
template <typename Index>
py::array build_shuffle_index_impl(const int64_t* b, int64_t num_blocks, uint64_t seed) {
  const int64_t n = b[num_blocks];
  py::array_t<Index> out(n);
  Index* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Index>(i);
    std::mt19937_64 rng(seed);
    for (int64_t j = 0; j < num_blocks; ++j) fisher_yates(o + b[j], b[j + 1] - b[j], rng);
  }
  return std::move(out);
}

py::array build_shuffle_index(py::array_t<int64_t, py::array::c_style | py::array::forcecast> boundaries, uint64_t seed) {
  const int64_t* b = checked_1d(boundaries, "boundaries");
  const int64_t m = boundaries.shape(0);
  if (m < 2) throw py::value_error("boundaries needs at least 2 entries (start and end), got " + std::to_string(m));
  if (b[0] != 0) throw py::value_error("boundaries[0] must be 0, got " + std::to_string(b[0]));
  for (int64_t j = 1; j < m; ++j)
    if (b[j] < b[j - 1])
      throw py::value_error("boundaries must be non-decreasing: boundaries[" + std::to_string(j) + "] = " +
                            std::to_string(b[j]) + " < " + std::to_string(b[j - 1]));
  if (b[m - 1] < UINT32_MAX) return build_shuffle_index_impl<uint32_t>(b, m - 1, seed);
  return build_shuffle_index_impl<int64_t>(b, m - 1, seed);
}

// ---------------------------------------------------------------------------------------------------------
// Blending. Weights are integers w_k (Python turns fractional weights into exact integer ratios), W = sum w.
//
// Per global batch b the exact cumulative target of source k is T_k(b) = w_k * gbs * (b + 1) / W. The batch
// gives each source the whole part of its deficit T_k(b) - C_k(b-1) and spreads the remainder by the
// largest fractional part (largest-remainder rule on running totals), so C_k(b) stays within one sample of
// T_k(b) and equals it whenever T_k(b) is an integer (2400/640/160 of 3200 in every batch for 15:4:1).
class BatchApportioner {
 public:
  BatchApportioner(std::vector<int64_t> weights, int64_t gbs)
      : w_(std::move(weights)), gbs_(gbs), cum_(w_.size(), 0), base_(w_.size()), order_(w_.size()) {
    for (int64_t x : w_) total_ += x;
  }

  // Counts of the next global batch, written to `counts` (size K).
  void next(int64_t* counts) {
    const size_t k_n = w_.size();
    ++batch_;
    int64_t assigned = 0;
    std::vector<i128> residual(k_n);
    for (size_t k = 0; k < k_n; ++k) {
      const i128 deficit = static_cast<i128>(w_[k]) * gbs_ * batch_ - static_cast<i128>(cum_[k]) * total_;
      const i128 whole = deficit > 0 ? deficit / total_ : 0;
      base_[k] = static_cast<int64_t>(whole);
      residual[k] = deficit - whole * total_;
      assigned += base_[k];
    }
    int64_t remainder = gbs_ - assigned;
    for (size_t k = 0; k < k_n; ++k) order_[k] = k;
    // Largest residual first; ties go to the lower source index, so the rule is deterministic.
    std::stable_sort(order_.begin(), order_.end(), [&](size_t a, size_t b) { return residual[a] > residual[b]; });
    for (size_t j = 0; remainder > 0; j = (j + 1) % k_n, --remainder) base_[order_[j]] += 1;
    // Over-assignment (the whole parts sum past the batch) takes back from the smallest residuals.
    for (size_t j = k_n; remainder < 0; ++remainder) {
      do { j = (j == 0 ? k_n : j) - 1; } while (base_[order_[j]] == 0);
      base_[order_[j]] -= 1;
    }
    for (size_t k = 0; k < k_n; ++k) {
      counts[k] = base_[k];
      cum_[k] += base_[k];
    }
  }

 private:
  std::vector<int64_t> w_;
  int64_t gbs_, total_ = 0, batch_ = 0;
  std::vector<int64_t> cum_, base_;
  std::vector<size_t> order_;
};

// Layout of one global batch with per-source counts c_k, cut into n = gbs / m micro-batch slices of m samples
// (the sampler hands slice s = step * dp + dp_rank to one rank). Every slice gets floor or ceil of c_k * m / gbs
// samples of each source: f_k = floor(c_k m / gbs) always, plus one extra in r_k = c_k - f_k n of the slices.
// Slices take the sources whose extras must go now (remaining extras == remaining slices), then those furthest
// behind their even spread, so extras are spread evenly through the batch.
std::vector<uint8_t> batch_layout(const std::vector<int64_t>& c, int64_t gbs, int64_t m) {
  const size_t k_n = c.size();
  const int64_t n = gbs / m;
  std::vector<int64_t> f(k_n), r(k_n), taken(k_n, 0);
  int64_t extra_per_slice = m;
  for (size_t k = 0; k < k_n; ++k) {
    f[k] = c[k] * m / gbs;
    r[k] = c[k] - f[k] * n;
    extra_per_slice -= f[k];
  }
  std::vector<uint8_t> layout;
  layout.reserve(gbs);
  std::vector<size_t> cand(k_n);
  std::vector<char> pick(k_n);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t slices_left = n - s;
    std::fill(pick.begin(), pick.end(), 0);
    int64_t picked = 0;
    for (size_t k = 0; k < k_n; ++k)
      if (r[k] - taken[k] == slices_left) pick[k] = 1, ++picked;
    size_t nc = 0;
    for (size_t k = 0; k < k_n; ++k)
      if (!pick[k] && r[k] - taken[k] > 0) cand[nc++] = k;
    // Furthest behind the even spread r_k (s + 1) / n first: compare r_k (s + 1) - taken_k n.
    std::stable_sort(cand.begin(), cand.begin() + nc, [&](size_t a, size_t b) {
      return r[a] * (s + 1) - taken[a] * n > r[b] * (s + 1) - taken[b] * n;
    });
    for (size_t j = 0; j < nc && picked < extra_per_slice; ++j) pick[cand[j]] = 1, ++picked;
    for (size_t k = 0; k < k_n; ++k) {
      taken[k] += pick[k];
      layout.insert(layout.end(), static_cast<size_t>(f[k] + pick[k]), static_cast<uint8_t>(k));
    }
  }
  return layout;
}

std::vector<int64_t> checked_weights(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& weights,
                                     int64_t gbs) {
  const int64_t* w = checked_1d(weights, "weights");
  const int64_t k_n = weights.shape(0);
  if (k_n < 1 || k_n > 255) throw py::value_error("the blend needs 1 to 255 sources, got " + std::to_string(k_n));
  if (gbs < 1) throw py::value_error("global_batch_size must be >= 1, got " + std::to_string(gbs));
  int64_t total = 0;
  for (int64_t k = 0; k < k_n; ++k) {
    if (w[k] <= 0) throw py::value_error("weights[" + std::to_string(k) + "] must be positive, got " + std::to_string(w[k]));
    if (w[k] > (int64_t(1) << 50) || total > (int64_t(1) << 56))
      throw py::value_error("integer weights must stay below 2**50 (scale them down)");
    total += w[k];
  }
  return std::vector<int64_t>(w, w + k_n);
}

py::tuple build_blending_indices(py::array_t<int64_t, py::array::c_style | py::array::forcecast> weights,
                                 int64_t global_batch_size, int64_t micro_batch_size, int64_t num_samples) {
  std::vector<int64_t> w = checked_weights(weights, global_batch_size);
  if (micro_batch_size < 1 || global_batch_size % micro_batch_size)
    throw py::value_error("micro_batch_size " + std::to_string(micro_batch_size) +
                          " must be >= 1 and divide global_batch_size " + std::to_string(global_batch_size));
  if (num_samples < 0) throw py::value_error("num_samples must be >= 0, got " + std::to_string(num_samples));
  const size_t k_n = w.size();
  py::array_t<uint8_t> dataset_index(num_samples);
  py::array_t<int64_t> dataset_sample_index(num_samples);
  py::array_t<int64_t> totals(static_cast<int64_t>(k_n));
  uint8_t* di = dataset_index.mutable_data();
  int64_t* dsi = dataset_sample_index.mutable_data();
  int64_t* tot = totals.mutable_data();
  {
    py::gil_scoped_release nogil;
    BatchApportioner apportion(w, global_batch_size);
    std::vector<int64_t> counts(k_n), next_sample(k_n, 0);
    // Batches with the same counts share one layout (15:4:1 of 3200 has a single one). `occurrence[j]` numbers
    // the samples of each source inside the batch, so the fill below has no loop-carried dependency.
    struct Layout {
      std::vector<uint8_t> source;
      std::vector<int64_t> occurrence;
    };
    std::map<std::vector<int64_t>, Layout> layouts;
    for (int64_t start = 0; start < num_samples; start += global_batch_size) {
      apportion.next(counts.data());
      auto it = layouts.find(counts);
      if (it == layouts.end()) {
        if (layouts.size() > 4096) layouts.clear();
        Layout lay{batch_layout(counts, global_batch_size, micro_batch_size), {}};
        lay.occurrence.resize(lay.source.size());
        std::vector<int64_t> seen(k_n, 0);
        for (size_t j = 0; j < lay.source.size(); ++j) lay.occurrence[j] = seen[lay.source[j]]++;
        it = layouts.emplace(counts, std::move(lay)).first;
      }
      const uint8_t* src = it->second.source.data();
      const int64_t* occ = it->second.occurrence.data();
      const int64_t len = std::min(global_batch_size, num_samples - start);
      std::memcpy(di + start, src, static_cast<size_t>(len));
      const int64_t* base = next_sample.data();
      int64_t* out = dsi + start;
      for (int64_t j = 0; j < len; ++j) out[j] = base[src[j]] + occ[j];
      if (len == global_batch_size) {
        for (size_t k = 0; k < k_n; ++k) next_sample[k] += counts[k];
      } else {  // the last, partial batch
        for (int64_t j = 0; j < len; ++j) ++next_sample[src[j]];
      }
    }
    for (size_t k = 0; k < k_n; ++k) tot[k] = next_sample[k];
  }
  return py::make_tuple(dataset_index, dataset_sample_index, totals);
}

py::array_t<int64_t> blend_batch_counts(py::array_t<int64_t, py::array::c_style | py::array::forcecast> weights,
                                        int64_t global_batch_size, int64_t num_batches) {
  std::vector<int64_t> w = checked_weights(weights, global_batch_size);
  if (num_batches < 0) throw py::value_error("num_batches must be >= 0, got " + std::to_string(num_batches));
  const int64_t k_n = static_cast<int64_t>(w.size());
  py::array_t<int64_t> out({num_batches, k_n});
  int64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    BatchApportioner apportion(w, global_batch_size);
    for (int64_t b = 0; b < num_batches; ++b) apportion.next(o + b * k_n);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Sample gatherer: copies samples straight from the memory-mapped .bin files into one [n, seq_length + 1]
// batch, for one GPT dataset or a whole blend, in one call (the loader and the shard writer never loop in
// Python). It keeps references to the arrays it reads, and checks every index against them.
enum class Dt { u8, u16, i32, i64, u32 };

Dt dtype_code(const py::dtype& d, const char* what) {
  if (d.is(py::dtype::of<uint8_t>())) return Dt::u8;
  if (d.is(py::dtype::of<uint16_t>())) return Dt::u16;
  if (d.is(py::dtype::of<int32_t>())) return Dt::i32;
  if (d.is(py::dtype::of<int64_t>())) return Dt::i64;
  if (d.is(py::dtype::of<uint32_t>())) return Dt::u32;
  throw py::value_error(std::string(what) + ": unsupported dtype " + py::str(d).cast<std::string>());
}

int64_t itemsize(Dt d) {
  switch (d) {
    case Dt::u8: return 1;
    case Dt::u16: return 2;
    case Dt::i32: case Dt::u32: return 4;
    default: return 8;
  }
}

// Element i of a contiguous array of dtype d, widened to int64. The .idx arrays sit at unaligned offsets
// (34-byte header), so everything is read through memcpy.
inline int64_t load_as_int64(const void* base, Dt d, int64_t i) {
  const char* p = static_cast<const char*>(base) + i * itemsize(d);
  switch (d) {
    case Dt::u8: return *reinterpret_cast<const uint8_t*>(p);
    case Dt::u16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    case Dt::i32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case Dt::u32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
    default: { int64_t v; std::memcpy(&v, p, 8); return v; }
  }
}

struct ArrayView {
  py::array keep;  // holds the mapping alive
  const void* data = nullptr;
  Dt dt = Dt::i64;
  int64_t size = 0;
};

ArrayView view_1d(py::array a, const char* what) {
  if (a.ndim() != 1 || !(a.flags() & py::array::c_style))
    throw py::value_error(std::string(what) + " must be a contiguous 1-D array");
  return ArrayView{a, a.data(), dtype_code(a.dtype(), what), a.shape(0)};
}

struct GatherSource {
  ArrayView tokens, pointers, sizes, doc_idx, sample_idx, shuffle;  // sample_idx is [rows, 2], flattened
};

template <typename Out>
void copy_tokens(const ArrayView& t, int64_t start, int64_t len, Out* o) {
  switch (t.dt) {
    case Dt::u8: { auto p = static_cast<const uint8_t*>(t.data) + start; std::copy(p, p + len, o); break; }
    case Dt::u16: { auto p = static_cast<const uint16_t*>(t.data) + start; std::copy(p, p + len, o); break; }
    case Dt::i32: { auto p = static_cast<const int32_t*>(t.data) + start; std::copy(p, p + len, o); break; }
    case Dt::u32: { auto p = static_cast<const uint32_t*>(t.data) + start; std::copy(p, p + len, o); break; }
    default: { auto p = static_cast<const int64_t*>(t.data) + start; std::copy(p, p + len, o); break; }
  }
}

// Sample at position j of source s's shuffle into o[0 .. seq_length].
template <typename Out>
void gather_one(const GatherSource& s, int64_t j, int64_t seq_length, Out* o) {
  if (j < 0 || j >= s.shuffle.size)
    throw std::invalid_argument("sample " + std::to_string(j) + " outside the " + std::to_string(s.shuffle.size) +
                                " samples of its dataset");
  const int64_t id = load_as_int64(s.shuffle.data, s.shuffle.dt, j);
  const int64_t rows = s.sample_idx.size / 2;
  if (id < 0 || id + 1 >= rows)
    throw std::invalid_argument("shuffle index entry " + std::to_string(id) + " outside the sample index of " +
                                std::to_string(rows - 1) + " samples");
  int64_t pos = load_as_int64(s.sample_idx.data, s.sample_idx.dt, 2 * id);
  int64_t offset = load_as_int64(s.sample_idx.data, s.sample_idx.dt, 2 * id + 1);
  const int64_t last_pos = load_as_int64(s.sample_idx.data, s.sample_idx.dt, 2 * id + 2);
  const int64_t last_offset = load_as_int64(s.sample_idx.data, s.sample_idx.dt, 2 * id + 3);
  if (pos < 0 || last_pos >= s.doc_idx.size || pos > last_pos)
    throw std::invalid_argument("sample " + std::to_string(id) + " points outside the document index");
  const int64_t width = seq_length + 1, tok_size = itemsize(s.tokens.dt);
  int64_t written = 0;
  for (; pos <= last_pos; ++pos, offset = 0) {
    const int64_t doc = load_as_int64(s.doc_idx.data, s.doc_idx.dt, pos);
    if (doc < 0 || doc >= s.sizes.size) throw std::invalid_argument("document " + std::to_string(doc) + " out of range");
    const int64_t size = load_as_int64(s.sizes.data, s.sizes.dt, doc);
    const int64_t end = pos == last_pos ? last_offset + 1 : size;  // the last document up to and including last_offset
    const int64_t len = end - offset;
    const int64_t start = load_as_int64(s.pointers.data, s.pointers.dt, doc) / tok_size + offset;
    if (offset < 0 || len < 0 || end > size || start < 0 || start + len > s.tokens.size || written + len > width)
      throw std::invalid_argument("sample " + std::to_string(id) + " reads outside document " + std::to_string(doc) +
                                  " (index and data disagree)");
    copy_tokens(s.tokens, start, len, o + written);
    written += len;
  }
  if (written != width)
    throw std::invalid_argument("sample " + std::to_string(id) + " has " + std::to_string(written) + " tokens, expected " +
                                std::to_string(width));
}

class SampleGatherer {
 public:
  // sources: tuples (tokens, pointers, sizes, doc_idx, sample_idx, shuffle_idx), one per dataset. With
  // dataset_index / dataset_sample_index (a blend), item i is sample dataset_sample_index[i] of source
  // dataset_index[i]; without them (one source), item i is sample i of source 0.
  SampleGatherer(py::list sources, int64_t seq_length, py::object dataset_index, py::object dataset_sample_index)
      : seq_length_(seq_length) {
    if (seq_length < 1) throw py::value_error("seq_length must be >= 1");
    for (auto item : sources) {
      auto t = item.cast<py::tuple>();
      if (t.size() != 6) throw py::value_error("each source is (tokens, pointers, sizes, doc_idx, sample_idx, shuffle_idx)");
      GatherSource s{view_1d(t[0], "tokens"), view_1d(t[1], "pointers"), view_1d(t[2], "sizes"),
                     view_1d(t[3], "doc_idx"), {}, view_1d(t[5], "shuffle_idx")};
      py::array si = t[4].cast<py::array>();
      if (si.ndim() != 2 || si.shape(1) != 2 || !(si.flags() & py::array::c_style))
        throw py::value_error("sample_idx must be a contiguous [n, 2] array");
      s.sample_idx = ArrayView{si, si.data(), dtype_code(si.dtype(), "sample_idx"), si.shape(0) * 2};
      if (s.pointers.size != s.sizes.size || s.pointers.dt != Dt::i64 || s.sizes.dt != Dt::i32)
        throw py::value_error("pointers (int64) and sizes (int32) must have one entry per sequence");
      sources_.push_back(std::move(s));
    }
    if (sources_.empty() || sources_.size() > 255) throw py::value_error("the gatherer needs 1 to 255 sources");
    if (dataset_index.is_none() != dataset_sample_index.is_none())
      throw py::value_error("give both dataset_index and dataset_sample_index, or neither");
    if (!dataset_index.is_none()) {
      blend_ = true;
      dataset_index_ = view_1d(dataset_index.cast<py::array>(), "dataset_index");
      dataset_sample_index_ = view_1d(dataset_sample_index.cast<py::array>(), "dataset_sample_index");
      if (dataset_index_.dt != Dt::u8 || dataset_sample_index_.dt != Dt::i64 ||
          dataset_index_.size != dataset_sample_index_.size)
        throw py::value_error("dataset_index (uint8) and dataset_sample_index (int64) must have the same length");
      size_ = dataset_index_.size;
    } else {
      if (sources_.size() != 1) throw py::value_error("several sources need a dataset_index");
      size_ = sources_[0].shuffle.size;
    }
  }

  int64_t size() const { return size_; }

  // out[r] = item indices[r]; out is [len(indices), seq_length + 1] of int64 or a token dtype.
  void gather(py::array_t<int64_t, py::array::c_style | py::array::forcecast> indices, py::array out) const {
    if (indices.ndim() != 1) throw py::value_error("indices must be 1-D");
    if (out.ndim() != 2 || out.shape(0) != indices.shape(0) || out.shape(1) != seq_length_ + 1 ||
        !(out.flags() & py::array::c_style) || !out.writeable())
      throw py::value_error("out must be a writeable contiguous array of shape [len(indices), seq_length + 1]");
    const Dt out_dt = dtype_code(out.dtype(), "out");
    const int64_t* idx = indices.data();
    const int64_t n = indices.shape(0);
    void* o = out.mutable_data();
    py::gil_scoped_release nogil;
    switch (out_dt) {
      case Dt::u8: run(idx, n, static_cast<uint8_t*>(o)); break;
      case Dt::u16: run(idx, n, static_cast<uint16_t*>(o)); break;
      case Dt::i32: run(idx, n, static_cast<int32_t*>(o)); break;
      case Dt::u32: run(idx, n, static_cast<uint32_t*>(o)); break;
      default: run(idx, n, static_cast<int64_t*>(o)); break;
    }
  }

 private:
  template <typename Out>
  void run(const int64_t* idx, int64_t n, Out* out) const {
    const int64_t width = seq_length_ + 1;
    for (int64_t r = 0; r < n; ++r) {
      const int64_t i = idx[r];
      if (i < 0 || i >= size_)
        throw std::out_of_range("index " + std::to_string(i) + " out of range for " + std::to_string(size_) + " samples");
      int64_t k = 0, j = i;
      if (blend_) {
        k = load_as_int64(dataset_index_.data, Dt::u8, i);
        j = load_as_int64(dataset_sample_index_.data, Dt::i64, i);
        if (k >= static_cast<int64_t>(sources_.size()))
          throw std::invalid_argument("dataset_index[" + std::to_string(i) + "] = " + std::to_string(k) + " names no source");
      }
      gather_one(sources_[k], j, seq_length_, out + r * width);
    }
  }

  int64_t seq_length_, size_ = 0;
  bool blend_ = false;
  std::vector<GatherSource> sources_;
  ArrayView dataset_index_, dataset_sample_index_;
};

}  // namespace

void register_dataset_helpers(py::module_& m) {
  m.def("build_document_index", &build_document_index, py::arg("documents"), py::arg("num_epochs"), py::arg("seed"),
        "Documents repeated num_epochs times, each epoch shuffled on its own (int32).");
  m.def("build_sample_index", &build_sample_index, py::arg("sizes"), py::arg("doc_idx"), py::arg("seq_length"),
        py::arg("num_samples"),
        "[num_samples + 1, 2] (doc_idx position, offset) where each sample of seq_length + 1 tokens starts.");
  m.def("build_shuffle_index", &build_shuffle_index, py::arg("boundaries"), py::arg("seed"),
        "Permutation of [0, boundaries[-1]) shuffling each block between consecutive boundaries on its own.");
  m.def("build_blending_indices", &build_blending_indices, py::arg("weights"), py::arg("global_batch_size"),
        py::arg("micro_batch_size"), py::arg("num_samples"),
        "(dataset_index uint8, dataset_sample_index int64, samples per source) with exact per-batch counts.");
  m.def("blend_batch_counts", &blend_batch_counts, py::arg("weights"), py::arg("global_batch_size"),
        py::arg("num_batches"), "[num_batches, K] per-source sample counts of each global batch.");
  py::class_<SampleGatherer>(m, "SampleGatherer",
                             "Copies samples of one GPT dataset or a blend from the mapped .bin files into a batch.")
      .def(py::init<py::list, int64_t, py::object, py::object>(), py::arg("sources"), py::arg("seq_length"),
           py::arg("dataset_index") = py::none(), py::arg("dataset_sample_index") = py::none())
      .def("__len__", &SampleGatherer::size)
      .def("gather", &SampleGatherer::gather, py::arg("indices"), py::arg("out"),
           "out[r] = item indices[r]; out is [len(indices), seq_length + 1] (int64 or a token dtype).");
}
