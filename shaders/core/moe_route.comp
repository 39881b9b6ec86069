#version 460
// MoE routing, a stable counting sort in one workgroup (deterministic, no atomics):
//   indices: (M) int32 expert per entry (M = N·k),  order: (M),  position: (M),  offsets: (E + 1), all int32.
//   Bucket of entry i: indices[i] if in [0, E), else E (dropped). order lists entries bucket by bucket,
//   in entry order within a bucket; offsets[b] = first slot of bucket b (b ≤ E); position[order[p]] = p.
//   Invocation t owns a contiguous chunk of entries: it counts them per bucket, the counts are scanned
//   (bucket-major, then invocation), and each invocation writes its entries at their slots. E ≤ 64.
layout(local_size_x = 64) in;
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer IntRef { int v[]; };
layout(push_constant) uniform Push { IntRef indices; IntRef order; IntRef position; IntRef offsets; uint M; uint E; } pc;

const uint THREADS = 64;
const uint BUCKETS = 65;
shared uint cnt[THREADS * BUCKETS];   // [invocation][bucket]: counts, then exclusive prefixes within the bucket
shared uint start[BUCKETS];

uint bucket_of(uint i) {
    const int e = pc.indices.v[i];
    return (e >= 0 && uint(e) < pc.E) ? uint(e) : pc.E;
}

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint chunk = (pc.M + THREADS - 1) / THREADS;
    const uint lo = min(pc.M, t * chunk), hi = min(pc.M, lo + chunk);
    for (uint b = 0; b <= pc.E; b++) cnt[t * BUCKETS + b] = 0u;
    for (uint i = lo; i < hi; i++) cnt[t * BUCKETS + bucket_of(i)] += 1u;
    barrier();
    // Invocation b scans bucket b over the invocations; leaves the bucket total in start[b].
    if (t <= pc.E) {
        uint run = 0u;
        for (uint s = 0; s < THREADS; s++) {
            const uint c = cnt[s * BUCKETS + t];
            cnt[s * BUCKETS + t] = run;
            run += c;
        }
        start[t] = run;
    }
    barrier();
    if (t == 0u) {
        uint run = 0u;
        for (uint b = 0; b <= pc.E; b++) {
            const uint c = start[b];
            start[b] = run;
            pc.offsets.v[b] = int(run);
            run += c;
        }
    }
    barrier();
    for (uint i = lo; i < hi; i++) {
        const uint b = bucket_of(i);
        const uint p = start[b] + cnt[t * BUCKETS + b];
        cnt[t * BUCKETS + b] += 1u;
        pc.order.v[p] = int(i);
        pc.position.v[i] = int(p);
    }
}
