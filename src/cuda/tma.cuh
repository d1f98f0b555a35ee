// The TMA's bulk copies into shared memory and the mbarriers they complete on (sm_90): what the
// persistent decode step (decode_persistent.cu), the attention block (decode_attn_block.cu) and the
// shared-memory GEMV (ops/cuda/gemv_smem.cuh) use to bring a block's weights into shared memory while the
// block, or the kernel before it, does other work.
#pragma once

#include <cstdint>

namespace lmscope::cuda::tma {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/** One thread, before any use: mbarrier of `count` arrivals; visible to the async proxy (the TMA). */
__device__ __forceinline__ void init(uint64_t* mbar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(mbar)), "r"(count) : "memory");
}
__device__ __forceinline__ void fence_init() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

/** This thread's arrival on mbar, announcing `bytes` of copies that complete on it. */
__device__ __forceinline__ void expect_bytes(uint64_t* mbar, uint32_t bytes) {
    asm volatile("fence.proxy.async.shared::cta;" ::
                     : "memory");  // earlier generic accesses, then async writes
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(mbar)), "r"(bytes)
                 : "memory");
}

/** bytes (a multiple of 16, both addresses 16-byte aligned) from global src to shared dst, on mbar. */
__device__ __forceinline__ void copy(void* dst, const void* src, uint32_t bytes, uint64_t* mbar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
            smem_u32(dst)),
        "l"(src), "r"(bytes), "r"(smem_u32(mbar))
        : "memory");
}

/** Waits for the current phase (parity) of mbar, then flips the parity this thread keeps for it. */
__device__ __forceinline__ void wait(uint64_t* mbar, uint32_t& parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile(
            "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
            : "=r"(done)
            : "r"(smem_u32(mbar)), "r"(parity)
            : "memory");
    parity ^= 1u;
}

}  // namespace lmscope::cuda::tma
