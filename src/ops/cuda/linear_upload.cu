// Host linears -> the device layouts of DeviceLinear (ops_cuda.h), concatenated along `out`.
//   Dense     the weights' bytes back to back
//   Fp8Block  codes back to back; each part's scale rows appended, scale_row (out) points every
//             output row at its own part's block row (any `out`, any block_out per part)
//   AwqInt4   each part's qweight/qzeros/scales uploaded to temporaries and repacked on the GPU
//             (awq_repack_cuda) into its rows of qw / sz
// Biases of all parts concatenated as f32 (zeros for a part without one).

#include <vector>

#include "cuda/common.cuh"
#include "ops/cuda/linear_quant.cuh"
#include "ops/cuda/ops_cuda.h"
#include "ops/cuda/quant_decode.cuh"

namespace lmscope::cuda {

namespace {

const char* format_name(const Linear& l) {
    switch (l.format) {
        case LinearFormat::Fp8Block: return "FP8-block";
        case LinearFormat::AwqInt4: return "AWQ int4";
        case LinearFormat::Dense: break;
    }
    return dtype_name(l.weight.dtype());
}

void copy_to(void* dst, size_t offset, const Tensor& t, cudaStream_t stream) {
    CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + offset, t.raw(), t.nbytes(), cudaMemcpyHostToDevice, stream));
}

}  // namespace

DeviceArena::~DeviceArena() {
    for (void* p : ptrs_) cudaFree(p);
}

void* DeviceArena::alloc(size_t bytes) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
    ptrs_.push_back(p);
    bytes_ += bytes;
    return p;
}

DeviceLinear upload_linear_cuda(const std::vector<const Linear*>& parts, DeviceArena& arena, DType dtype16,
                                cudaStream_t stream) {
    if (parts.empty()) fail_rt("upload_linear_cuda: no linears");
    const Linear& first = *parts[0];
    DeviceLinear d;
    d.format = first.format;
    d.in = first.in();
    d.dtype = first.format == LinearFormat::Dense ? first.weight.dtype() : dtype16;
    for (const Linear* l : parts) {
        const bool same = l->format == first.format && l->in() == first.in() &&
                          (l->format != LinearFormat::Dense || l->weight.dtype() == first.weight.dtype()) &&
                          (l->format != LinearFormat::Fp8Block || l->block_in == first.block_in) &&
                          (l->format != LinearFormat::AwqInt4 || l->group_size == first.group_size);
        if (!same)
            fail_rt("CUDA backend: {} ({}, in {}) cannot be concatenated with {} ({}, in {}): the CUDA decoder runs "
                    "them as one matrix",
                    l->name, format_name(*l), l->in(), first.name, format_name(first), first.in());
        d.out += l->out();
    }
    std::vector<Tensor> keep;  // converted host copies must outlive the async copies
    switch (d.format) {
        case LinearFormat::Dense: {
            if (d.dtype != DType::F32 && d.dtype != DType::BF16 && d.dtype != DType::F16)
                fail_rt("CUDA backend: {} is {}; dense weights must be F32, F16 or BF16", first.name, dtype_name(d.dtype));
            size_t bytes = 0;
            for (const Linear* l : parts) bytes += l->weight.nbytes();
            void* w = arena.alloc(bytes);
            size_t off = 0;
            for (const Linear* l : parts) {
                copy_to(w, off, l->weight, stream);
                off += l->weight.nbytes();
            }
            d.weight = w;
            break;
        }
        case LinearFormat::Fp8Block: {
            d.block = first.block_in;
            const int64_t nbi = (d.in + d.block - 1) / d.block;
            int64_t srows = 0;
            for (const Linear* l : parts) {
                const int64_t rows_needed = (l->out() + l->block_out - 1) / l->block_out;
                if (l->weight.dtype() != DType::F8_E4M3 || !l->scale.defined() || l->scale.ndim() != 2 ||
                    l->scale.dim(0) != rows_needed || l->scale.dim(1) != nbi)
                    fail_rt("CUDA backend: {}: FP8-block weight needs F8_E4M3 codes and a ({}, {}) block scale", l->name,
                            rows_needed, nbi);
                srows += l->scale.dim(0);
            }
            // the tiled layout pads rows to whole 16-row tiles (read by the GEMV, never stored): zeroed
            const bool tiled = quant::fp8_tiled(d.out, d.in, d.block);
            const int64_t crows = tiled ? (d.out + 15) / 16 * 16 : d.out;
            auto* codes = static_cast<uint8_t*>(arena.alloc(static_cast<size_t>(crows * d.in)));
            if (tiled) CUDA_CHECK(cudaMemsetAsync(codes, 0, static_cast<size_t>(crows * d.in), stream));
            std::vector<DeviceBuffer> staged;  // row-major parts, tiled on the GPU
            auto* scale = static_cast<float*>(arena.alloc(static_cast<size_t>(srows * nbi) * sizeof(float)));
            std::vector<int32_t> srow(static_cast<size_t>(d.out));
            int64_t row = 0, sbase = 0;
            for (const Linear* l : parts) {
                if (tiled) {
                    staged.emplace_back(l->weight.nbytes());
                    staged.back().upload(l->weight.raw(), l->weight.nbytes());
                    fp8_tile_codes_cuda(staged.back().get<uint8_t>(), l->out(), d.in, row, codes, stream);
                } else {
                    copy_to(codes, static_cast<size_t>(row * d.in), l->weight, stream);
                }
                keep.push_back(l->scale.dtype() == DType::F32 ? l->scale : l->scale.to(DType::F32));
                copy_to(scale, static_cast<size_t>(sbase * nbi) * sizeof(float), keep.back(), stream);
                for (int64_t r = 0; r < l->out(); ++r) srow[static_cast<size_t>(row + r)] = static_cast<int32_t>(sbase + r / l->block_out);
                row += l->out();
                sbase += l->scale.dim(0);
            }
            auto* sr = static_cast<int32_t*>(arena.alloc(srow.size() * sizeof(int32_t)));
            CUDA_CHECK(cudaMemcpyAsync(sr, srow.data(), srow.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
            CUDA_CHECK(cudaStreamSynchronize(stream));  // srow is a local
            d.weight = codes;
            d.scale = scale;
            d.scale_row = sr;
            break;
        }
        case LinearFormat::AwqInt4: {
            d.block = first.group_size;
            if (d.block % 8 != 0 || d.in % d.block != 0)
                fail_rt("CUDA backend: {}: AWQ group size {} must be a multiple of 8 dividing in_features {}", first.name,
                        d.block, d.in);
            const int64_t ng = d.in / d.block;
            // the tiled layout pads rows to whole 16-row tiles (read by the GEMV, never stored): zeroed
            const int64_t rows = quant::awq_tiled(d.in, d.block) ? (d.out + 15) / 16 * 16 : d.out;
            auto* qw = static_cast<uint32_t*>(arena.alloc(static_cast<size_t>(rows * d.in / 8) * 4));
            CUDA_CHECK(cudaMemsetAsync(qw, 0, static_cast<size_t>(rows * d.in / 8) * 4, stream));
            auto* sz = static_cast<uint32_t*>(arena.alloc(static_cast<size_t>(d.out * ng) * 4));
            int64_t row = 0;
            for (const Linear* l : parts) {
                if (l->out() % 8 != 0) fail_rt("CUDA backend: {}: AWQ out_features {} is not a multiple of 8", l->name, l->out());
                DeviceBuffer qweight(l->weight.nbytes()), qzeros(l->qzeros.nbytes()), scales(l->scale.nbytes());
                qweight.upload(l->weight.raw(), l->weight.nbytes());
                qzeros.upload(l->qzeros.raw(), l->qzeros.nbytes());
                scales.upload(l->scale.raw(), l->scale.nbytes());
                awq_repack_cuda(qweight.get(), qzeros.get(), scales.get(), l->scale.dtype(), d.in, l->out(), d.block, row,
                                qw, sz, stream);
                CUDA_CHECK(cudaStreamSynchronize(stream));  // before the temporaries go
                row += l->out();
            }
            d.weight = qw;
            d.scale = sz;
            break;
        }
    }
    bool any_bias = false;
    for (const Linear* l : parts) any_bias |= l->bias.defined();
    if (any_bias) {
        std::vector<float> b;
        for (const Linear* l : parts) {
            if (l->bias.defined()) {
                const std::vector<float> v = l->bias.to_f32_vector();
                b.insert(b.end(), v.begin(), v.end());
            } else {
                b.insert(b.end(), static_cast<size_t>(l->out()), 0.0f);
            }
        }
        auto* bp = static_cast<float*>(arena.alloc(b.size() * sizeof(float)));
        CUDA_CHECK(cudaMemcpyAsync(bp, b.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
        d.bias = bp;
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));  // host sources (b, keep) are locals
    return d;
}

}  // namespace lmscope::cuda
