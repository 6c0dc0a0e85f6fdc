#pragma once
// The CUDA attention bodies (attention_gpu.cu): attention_forward, attention_backward,
// attention_first_query_forward and its backward, declared in ops_gpu.h from the op table. All pointers
// are device memory, and so are shape.offsets, shape.lengths and shape.prob_offsets; the
// host scalars num_sequences, num_heads, head_dim and max_length (>= every span
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
// The first-query pair (the [CLS]-only last layer, in inference and training) runs one block
// per (sequence, head).
#include "kernels/gpu/ops_gpu.h"
