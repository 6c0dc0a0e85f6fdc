#pragma once
// CUDA bodies of kernels::attention_forward / attention_backward (ops.h):
// same parameters minus the Device. All pointers are device memory, and so are
// shape.offsets, shape.lengths and shape.prob_offsets; the host scalars
// num_sequences, num_heads, head_dim and max_length (>= every span
// offsets[b+1] - offsets[b], validated by the op front before upload) give the
// launch shape. head_dim <= 128.
//
// One launch covers every sequence and head of a packed batch: the grid is
// (sequence, head, 32-row block of the sequence), blocks past a sequence's end
// exit at once, so no work is spent on padding to max_length. The results
// are those of kernels/cpu/attention_cpu.cc (pad keys masked with
// finfo(float32).min, the same counter-based dropout masks, element i of
// (sequence b, head h) indexed prob_offsets[b] + h n^2 + i), in fp32 whatever
// gpu::precision() says: attention is a few percent of BERT's FLOPs.
#include "kernels/ops.h"

namespace bertune::kernels::gpu {

void attention_forward(float* ctx, float* probs, const float* qkv, const AttentionShape& shape,
                       const Dropout& drop);
void attention_backward(float* dqkv, const float* dctx, const float* qkv, const float* probs,
                        const AttentionShape& shape, const Dropout& drop);
// The [CLS]-row-only inference attention (ops.h): one block per (sequence, head).
void attention_first_query_forward(float* ctx, const float* q, const float* kv, const AttentionShape& shape);

}  // namespace bertune::kernels::gpu
