using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Bdh.Tensors;

/// <summary>
/// The float GEMM, BLIS-style, written once over the vector width W (<see cref="IFloatVector{V}"/>). A work item is a
/// part of C: a column block of NB columns by a group of rows (whole tiles of MR rows), over all of k. For each KC-deep
/// slice of k, the item packs its columns of op(B) into NR-column slivers (k-major, zero-padded), so the micro-kernel
/// loads B with unit stride whatever the transposition, and the slivers are used while they are still in this core's
/// cache (one packing of all of B, shared by every item, would be evicted by the time the later row blocks read it: the
/// paper config's 8 MB per head). A plain A is read where it lies: the kernel broadcasts one element of each of its MR
/// rows per k step, and a row of A steps through memory by 1: MR short streams that stay in L1. Packing it would cost a
/// copy per 2·NR FMAs, a large share of BDH's narrow products (N = D = 128), where each packed row of A is used by few
/// slivers of B. A transposed A is copied, tile after tile (<see cref="CopiesA"/>), once for the whole product where
/// that is small (<see cref="CopyOfA"/>). The micro-kernel holds an MR×NR tile of C in registers, two vectors per row
/// (NR = 2·W.Count), with MR as large as the register file allows
/// (<see cref="IFloatVector{V}.GemmRows"/>: 8×32 in 16 of AVX-512's 32 zmm, 6×16 in 12 of AVX2's 16 ymm), and does
/// 2·MR FMAs per k step for 2 + MR loads. Items write disjoint parts of C and each sums its k slices in order: no split
/// reductions, the same bits for any thread count. With relu, the stores of the last k slice write max(C, 0): BDH's xs
/// and ys need no second pass over C.
/// The methods with loops are compiled fully optimized at their first call (AggressiveOptimization) and the tile's
/// sizes inline into them: an application that keeps the JIT's tiers (bdh turns them off) would otherwise run the
/// packing and the loop over tiles as unoptimized code for its first ~30 products, with a call to Tile per micro-kernel
/// call even once optimized. Timed from a fresh process, 30 products at AVX2 ran 10–25% slower that way.
/// </summary>
internal static unsafe class PackedGemm
{
    private const int KC = 256, NB = 256;
    private const int MaxRows = 8; // the most rows of C a micro-kernel tile has, at any width

    /// <summary><see cref="Multiply{W, V}"/> at the widest width this machine accelerates (<see cref="Simd.Widest"/> &gt; 0).</summary>
    public static void Multiply(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c,
        bool accumulate, bool relu, bool parallel, Causal causal)
    {
        switch (Simd.Widest)
        {
            case 512: Multiply<Float512, Vector512<float>>(m, n, k, a, b, c, accumulate, relu, parallel, causal); break;
            case 256: Multiply<Float256, Vector256<float>>(m, n, k, a, b, c, accumulate, relu, parallel, causal); break;
            default: Multiply<Float128, Vector128<float>>(m, n, k, a, b, c, accumulate, relu, parallel, causal); break;
        }
    }

    public static void Multiply<W, V>(int m, int n, int k, MatrixRef<float> a, MatrixRef<float> b, MatrixRef<float> c,
        bool accumulate, bool relu, bool parallel, Causal causal) where W : struct, IFloatVector<V> where V : struct
    {
        var (MR, _, MC) = Tile<W, V>();
        int tiles = (m + MR - 1) / MR, rowBlocks = (m + MC - 1) / MC, colBlocks = (n + NB - 1) / NB;
        int threads = parallel ? Parallelism.Threads : 1;
        // Row groups: lcm(colBlocks, threads) items where the rows allow, so every thread gets as many as every other.
        // They split the tiles of MR rows evenly, not whole row blocks: at AVX2 (48-row blocks) 512 rows in 2 groups of
        // blocks would be 272 and 240 rows.
        int rowGroups = Math.Min(rowBlocks, threads / GreatestCommonDivisor(colBlocks, threads));
        float[]? aCopy = SharesCopyOfA(a, tiles * MR, k, colBlocks) ? CopyOfA<W, V>(tiles, m, k, a, threads) : null;
        RunItems(rowGroups * colBlocks, threads, item =>
        {
            int group = item / colBlocks;
            ComputeItem<W, V>(group * tiles / rowGroups, (group + 1) * tiles / rowGroups, item % colBlocks, m, n, k, a, aCopy, b, c, accumulate, relu, causal);
        });
        if (aCopy != null) TensorPool<float>.Return(aCopy);
    }

    /// <summary>
    /// Whether a transposed A is copied once for the whole product (<see cref="CopyOfA"/>) rather than by each work
    /// item: where several column blocks would each copy it again and the copy is small enough to keep. dW = xᵀ·dY at the
    /// `cpu` preset's 1024 tokens copied its 512 KB A 8 times, gathered from L3 while dY streams through L2 (`perf`, AVX2,
    /// 1 thread, on an Ice Lake Xeon: 3.5% of the product's samples on the copy's prefetch alone); copied once, it went
    /// from 0.87× to 0.91× OpenBLAS's Haswell kernel (`Bdh.Benchmarks -- openblas 1`, two runs each).
    /// </summary>
    private static bool SharesCopyOfA(MatrixRef<float> a, int rows, int k, int colBlocks) =>
        CopiesA(a) && colBlocks > 1 && (long)rows * k <= SharedCopyLimit;

    private const int SharedCopyLimit = 1 << 20; // floats: 4 MB

    /// <summary>
    /// The copy of a transposed A that every item reads (rented; the caller returns it): k slice after k slice (KC deep,
    /// from p0·tiles·MR on), in each the tiles one after another, each k-major, as <see cref="CopyRowBlock"/> lays out a
    /// row block. The (slice, row block) pieces are copied in parallel.
    /// </summary>
    private static float[] CopyOfA<W, V>(int tiles, int m, int k, MatrixRef<float> a, int threads) where W : struct, IFloatVector<V> where V : struct
    {
        var (MR, _, MC) = Tile<W, V>();
        float[] copy = TensorPool<float>.Rent(tiles * MR * k);
        int slices = (k + KC - 1) / KC, blocksPerSlice = (tiles + MC / MR - 1) / (MC / MR);
        RunItems(slices * blocksPerSlice, threads, piece =>
        {
            int p0 = piece / blocksPerSlice * KC, s0 = piece % blocksPerSlice * (MC / MR), kc = Math.Min(KC, k - p0);
            fixed (float* start = copy)
                CopyRowBlock<W, V>(s0, Math.Min(s0 + MC / MR, tiles), m, p0, kc, a, SliceOfCopy<W, V>(start + TensorPool<float>.AlignedStart(copy), tiles, p0, s0, kc));
        });
        return copy;
    }

    /// <summary>Where row block s0's tiles of k slice p0 begin in a copy of A laid out as <see cref="CopyOfA"/> lays it out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* SliceOfCopy<W, V>(float* copy, int tiles, int p0, int s0, int kc) where W : struct, IFloatVector<V> where V : struct =>
        copy + ((long)p0 * tiles + (long)s0 * kc) * Tile<W, V>().MR;

    /// <summary>
    /// The rows of tiles [tile0, tile1) of C by one column block, over all of k: for each KC-deep slice, the column block's
    /// slivers of B are packed and then used, row block by row block (MC rows), while they are still in this core's cache.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ComputeItem<W, V>(int tile0, int tile1, int colBlock, int m, int n, int k, MatrixRef<float> a, float[]? sharedCopyOfA,
        MatrixRef<float> b, MatrixRef<float> c, bool accumulate, bool relu, Causal causal) where W : struct, IFloatVector<V> where V : struct
    {
        var (MR, NR, MC) = Tile<W, V>();
        int t0 = colBlock * NB / NR, t1 = (Math.Min((colBlock + 1) * NB, n) + NR - 1) / NR, tiles = (m + MR - 1) / MR;
        float[] bPack = TensorPool<float>.Rent((t1 - t0) * SliverStride<W, V>(Math.Min(k, KC)));
        // A transposed A is read from a copy: the product's shared one, or else one of its row blocks at a time, made here.
        float[]? blockCopy = CopiesA(a) && sharedCopyOfA is null ? TensorPool<float>.Rent(MC * Math.Min(k, KC)) : null;
        // All from a cache line on (the pool's arrays are pinned): the kernel's every load of B a single line.
        fixed (float* packArray = bPack, blockArray = blockCopy, sharedArray = sharedCopyOfA)
        {
            float* packed = packArray + TensorPool<float>.AlignedStart(bPack);
            float* block = blockCopy is null ? null : blockArray + TensorPool<float>.AlignedStart(blockCopy);
            float* shared = sharedCopyOfA is null ? null : sharedArray + TensorPool<float>.AlignedStart(sharedCopyOfA);
            for (int p0 = 0; p0 < k; p0 += KC)
            {
                int kc = Math.Min(KC, k - p0);
                PackB<W, V>(b, n, p0, kc, t0, t1, packed);
                for (int s0 = tile0; s0 < tile1; s0 += MC / MR)
                {
                    int sEnd = Math.Min(s0 + MC / MR, tile1);
                    if (block != null) CopyRowBlock<W, V>(s0, sEnd, m, p0, kc, a, block);
                    float* aTiles = shared != null ? SliceOfCopy<W, V>(shared, tiles, p0, s0, kc) : block; // null for a plain A
                    ComputeBlock<W, V>(s0, sEnd, t0, t1, m, n, p0, kc, a, aTiles, packed, c, accumulate || p0 > 0, relu && p0 + kc == k, causal);
                }
            }
        }
        TensorPool<float>.Return(bPack);
        if (blockCopy != null) TensorPool<float>.Return(blockCopy);
    }

    private static int GreatestCommonDivisor(int a, int b) => b == 0 ? a : GreatestCommonDivisor(b, a % b);

    /// <summary>
    /// Whether the kernel reads A from a copy of each row block, tile after tile, k-major: when A is transposed. A tile's
    /// rows then lie side by side and its k steps a stride apart, so each k step reads MR floats from a cache line of its
    /// own: kc lines a tile, which at 512 bits take as much of L1 as the sliver of B the next tile reads again (and at a
    /// stride of whole 4 KB pages fall in a handful of its sets). From the copy a tile's A is kc·MR consecutive floats.
    /// Against the same products from a plain A (`Bdh.Benchmarks -- transposed 2`), on an Intel Ice Lake Xeon: A in place
    /// 0.68–0.82× at 512 bits and 0.75–0.85× at AVX2, the copy 0.87–0.95× and 0.90–0.97×; the `cpu` preset's
    /// dW = xᵀ·dY (`-- gflops 2`) went from 140 to 165 GFLOP/s at 512 bits. On a Zen 5, copying only at page strides took
    /// the paper config's xyᵀ·dy from 0.71× to 0.98× at AVX2.
    /// </summary>
    private static bool CopiesA(MatrixRef<float> a) => a.Transposed;

    /// <summary>The tile at width W: MR rows by NR = two vectors of columns, in row blocks of MC = 8 tiles' rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (int MR, int NR, int MC) Tile<W, V>() where W : struct, IFloatVector<V> where V : struct =>
        (W.GemmRows, 2 * W.Count, 8 * W.GemmRows);

    /// <summary>
    /// Floats from one packed sliver of B to the next: its kc·NR, and a cache line more. PackB writes a row of every
    /// sliver per row of B; slivers a multiple of 4 KB apart would put all those writes in one set of the L1 cache, and
    /// a column block has more slivers (16 at AVX2, 32 at 128 bits) than the set has ways (8–12).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SliverStride<W, V>(int kc) where W : struct, IFloatVector<V> where V : struct => Tile<W, V>().NR * kc + 16;

    private static void RunItems(int count, int threads, Action<int> body)
    {
        if (threads == 1) for (int i = 0; i < count; i++) body(i);
        else Parallelism.For(count, body);
    }

    /// <summary>pack[(t − t0)·SliverStride + p·NR + j] = B[p0 + p, t·NR + j] for slivers t in [t0, t1), zero past column n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB<W, V>(MatrixRef<float> b, int n, int p0, int kc, int t0, int t1, float* pack)
        where W : struct, IFloatVector<V> where V : struct
    {
        int NR = Tile<W, V>().NR, w = W.Count;
        fixed (float* bP = b.Array)
        {
            if (!b.Transposed) // row p of B is contiguous: read it once, each sliver's two vectors to their own place
            {
                int full = Math.Min(t1, n / NR);
                for (int p = 0; p < kc; p++)
                {
                    float* row = bP + b.Offset + (long)(p0 + p) * b.Stride, dst = pack + p * NR;
                    // Each row's run is a few lines inside a new 4 KB page, where the hardware's stream prefetcher
                    // starts over: rows requested a few ahead keep their misses in flight (dW = xᵀ·dY reads all of dY once).
                    if (p + Gemv.PrefetchRows < kc) Simd.PrefetchRun(row + Gemv.PrefetchRows * (long)b.Stride + t0 * NR, (full - t0) * NR);
                    for (int t = t0; t < full; t++)
                    {
                        float* from = row + t * NR, to = dst + (t - t0) * SliverStride<W, V>(kc);
                        W.Store(W.Load(from), to);
                        W.Store(W.Load(from + w), to + w);
                    }
                }
            }
            for (int t = b.Transposed ? t0 : Math.Max(t0, n / NR); t < t1; t++) // transposed slivers, and the last partial one
            {
                float* dst = pack + (t - t0) * SliverStride<W, V>(kc);
                int cols = Math.Min(NR, n - t * NR);
                if (cols < NR) new Span<float>(dst, NR * kc).Clear();
                if (b.Transposed) // B[p, j] = b.Array[j·stride + p]: the sliver's columns, each contiguous over p, turned into its rows
                    Layout.Transpose<float>(cols, kc, 1, b.Array, b.Offset + t * NR * b.Stride + p0, b.Stride, new Span<float>(dst, NR * kc), 0, NR, accumulate: false);
                else
                    for (int p = 0; p < kc; p++)
                        new Span<float>(bP + b.Offset + (long)(p0 + p) * b.Stride + t * NR, cols).CopyTo(new Span<float>(dst + p * NR, cols));
            }
        }
    }

    /// <summary>
    /// Copies the tiles [s0, sEnd) of a transposed A for the k slice [p0, p0 + kc) to `to`: the tiles one after another, each
    /// k-major (MR floats a k step, the layout of ComputeBlock's partialRows), so the kernel reads a tile's A as one stream.
    /// Zero past row m, which completes the last tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CopyRowBlock<W, V>(int s0, int sEnd, int m, int p0, int kc, MatrixRef<float> a, float* to) where W : struct, IFloatVector<V> where V : struct
    {
        int MR = Tile<W, V>().MR, valid = Math.Min((sEnd - s0) * MR, m - s0 * MR);
        fixed (float* aBase = a.Array)
            for (int p = 0; p < kc; p++, to += MR)
            {
                // A(i, p0 + p) = aBase[offset + (p0 + p)·stride + i]: this k step's rows of the block lie side by side.
                float* run = aBase + a.Offset + (long)(p0 + p) * a.Stride + s0 * MR, tile = to;
                if (p + Gemv.PrefetchRows < kc) Simd.PrefetchRun(run + Gemv.PrefetchRows * (long)a.Stride, valid);
                int i = 0;
                for (; i + MR <= valid; i += MR, tile += MR * kc) Unsafe.CopyBlockUnaligned(tile, run + i, (uint)(MR * sizeof(float)));
                if (i == valid) continue;
                new Span<float>(run + i, valid - i).CopyTo(new Span<float>(tile, valid - i));
                new Span<float>(tile + valid - i, MR - (valid - i)).Clear();
            }
    }

    /// <summary>
    /// The rows of tiles [s0, sEnd) of C (a row block) by slivers [t0, t1) of B, packed at bP, for the k slice [p0, p0 + kc);
    /// A read from its copy at aC (<see cref="CopyRowBlock"/>'s layout) when <see cref="CopiesA"/> says so, else null.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void ComputeBlock<W, V>(int s0, int sEnd, int t0, int t1, int m, int n, int p0, int kc,
        MatrixRef<float> a, float* aC, float* bP, MatrixRef<float> c, bool add, bool relu, Causal causal) where W : struct, IFloatVector<V> where V : struct
    {
        var (MR, NR, _) = Tile<W, V>();
        // Both are written before they are read (SkipLocalsInit: no 9 KB cleared per call).
        float* edge = stackalloc float[MaxRows * 32];
        float* partialRows = stackalloc float[MaxRows * KC];
        // A(i, p0 + p) sits at aP + i·aRow + p·aK.
        nint aRow = a.Transposed ? 1 : a.Stride, aK = a.Transposed ? a.Stride : 1;
        fixed (float* aBase = a.Array, cP = c.Array)
        {
            float* aP = aBase + a.Offset + p0 * aK;
            int lastRows = m - (sEnd - 1) * MR;
            // The last rows of a plain A, where fewer than MR remain: copied once beside zero rows, so the kernel reads no further.
            if (aC == null && lastRows < MR)
            {
                new Span<float>(partialRows, MR * kc).Clear();
                float* last = aP + (sEnd - 1) * MR * aRow;
                for (int r = 0; r < lastRows; r++)
                    for (int p = 0; p < kc; p++) partialRows[p * MR + r] = last[r * aRow + p * aK];
            }
            for (int t = t0; t < t1; t++)
                for (int s = s0; s < sEnd; s++)
                {
                    int i0 = s * MR, j0 = t * NR;
                    if (causal == Causal.LowerOutput && j0 >= i0 + MR - 1) continue; // every C[i, j] here has j ≥ i
                    // The k range [pLo, pHi) of this slice where the sliver's rows of A can be non-zero.
                    int pLo = causal == Causal.UpperA ? Math.Max(p0, i0 + 1) : p0;
                    int pHi = causal == Causal.LowerA ? Math.Min(p0 + kc, i0 + MR - 1) : p0 + kc;
                    if (pHi <= pLo && add) continue;
                    int depth = Math.Max(pHi - pLo, 0), skip = depth == 0 ? 0 : pLo - p0;
                    int rows = Math.Min(MR, m - i0), cols = Math.Min(NR, n - j0);
                    float* aSliver = aP + i0 * aRow, bSliver = bP + (t - t0) * SliverStride<W, V>(kc) + skip * NR;
                    nint sliverRow = aRow, sliverK = aK;
                    if (aC != null || rows < MR) // from the copy of A, or the last rows from partialRows: MR floats a k step
                    {
                        aSliver = aC != null ? aC + (s - s0) * MR * kc : partialRows;
                        (sliverRow, sliverK) = (1, MR);
                    }
                    aSliver += skip * sliverK;
                    float* cTile = cP + c.Offset + (long)i0 * c.Stride + j0;
                    // C's tile, asked for before the k loop: its stores at the end then find the lines in L1 rather
                    // than wait on memory, where a step leaves C. Timed in one process on an Ice Lake Xeon with C cold,
                    // the products with k = 128 (x·encoder, x·encoder_h) ran 1.13–1.38× faster, the square 1.04–1.10×,
                    // the others 0.87–1.07× (bench/HISTORY.md).
                    for (int r = 0; r < rows; r++) Simd.PrefetchRun(cTile + (long)r * c.Stride, cols);
                    if (cols == NR) // the tile's rows of C, fewer than MR in the last tile of an m that MR does not divide
                    {
                        MicroKernel<W, V>(depth, aSliver, sliverRow, sliverK, bSliver, cTile, c.Stride, add, relu, rows);
                        continue;
                    }
                    // Partial tile at the matrix's right edge: compute the full tile aside, keep the valid part.
                    MicroKernel<W, V>(depth, aSliver, sliverRow, sliverK, bSliver, edge, NR, false, false, MR);
                    for (int r = 0; r < rows; r++)
                        for (int j = 0; j < cols; j++)
                        {
                            float value = add ? cTile[(long)r * c.Stride + j] + edge[r * NR + j] : edge[r * NR + j];
                            cTile[(long)r * c.Stride + j] = relu ? float.Max(value, 0f) : value;
                        }
                }
        }
    }

    /// <summary>
    /// C[MR, NR] (+)= Σ_p A[0..MR, p] ⊗ b[p, 0..NR), then max(C, 0) with relu: the tile in 2·MR accumulators, MR broadcasts
    /// and 2 loads per p; the first <paramref name="rows"/> rows of it stored (AVX2's 6 rows divide none of BDH's m, 64,
    /// 128, 512 or 1024: copied element by element from a tile aside, the last tile's rows cost the `cpu` preset's attention
    /// products at k = 64 3–6% of their time).
    /// Row r of A is at a + r·aRow, stepping by aK per p. MR is 6 or 8, a constant of each width's copy, so the rows past
    /// it and their tests compile away.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void MicroKernel<W, V>(int kc, float* a, nint aRow, nint aK, float* b, float* c, int ldc, bool add, bool relu, int rows)
        where W : struct, IFloatVector<V> where V : struct
    {
        int w = W.Count, MR = W.GemmRows;
        V c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default,
            c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        float* a0 = a, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow, a4 = a3 + aRow, a5 = a4 + aRow, a6 = a5 + aRow, a7 = a6 + aRow;
        nint o = 0;
        for (int p = 0; p < kc; p++, o += aK, b += 2 * w)
        {
            var b0 = W.Load(b);
            var b1 = W.Load(b + w);
            var ai = W.Broadcast(a0 + o); c00 = W.MultiplyAdd(ai, b0, c00); c01 = W.MultiplyAdd(ai, b1, c01);
            ai = W.Broadcast(a1 + o); c10 = W.MultiplyAdd(ai, b0, c10); c11 = W.MultiplyAdd(ai, b1, c11);
            ai = W.Broadcast(a2 + o); c20 = W.MultiplyAdd(ai, b0, c20); c21 = W.MultiplyAdd(ai, b1, c21);
            ai = W.Broadcast(a3 + o); c30 = W.MultiplyAdd(ai, b0, c30); c31 = W.MultiplyAdd(ai, b1, c31);
            ai = W.Broadcast(a4 + o); c40 = W.MultiplyAdd(ai, b0, c40); c41 = W.MultiplyAdd(ai, b1, c41);
            ai = W.Broadcast(a5 + o); c50 = W.MultiplyAdd(ai, b0, c50); c51 = W.MultiplyAdd(ai, b1, c51);
            if (MR == 8)
            {
                ai = W.Broadcast(a6 + o); c60 = W.MultiplyAdd(ai, b0, c60); c61 = W.MultiplyAdd(ai, b1, c61);
                ai = W.Broadcast(a7 + o); c70 = W.MultiplyAdd(ai, b0, c70); c71 = W.MultiplyAdd(ai, b1, c71);
            }
        }
        StoreRow<W, V>(c, c00, c01, add, relu);
        if (rows > 1) StoreRow<W, V>(c + ldc, c10, c11, add, relu);
        if (rows > 2) StoreRow<W, V>(c + 2 * ldc, c20, c21, add, relu);
        if (rows > 3) StoreRow<W, V>(c + 3 * ldc, c30, c31, add, relu);
        if (rows > 4) StoreRow<W, V>(c + 4 * ldc, c40, c41, add, relu);
        if (rows > 5) StoreRow<W, V>(c + 5 * ldc, c50, c51, add, relu);
        if (MR == 8 && rows > 6) StoreRow<W, V>(c + 6 * ldc, c60, c61, add, relu);
        if (MR == 8 && rows > 7) StoreRow<W, V>(c + 7 * ldc, c70, c71, add, relu);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<W, V>(float* c, V lo, V hi, bool add, bool relu) where W : struct, IFloatVector<V> where V : struct
    {
        if (add)
        {
            lo = W.Add(lo, W.Load(c));
            hi = W.Add(hi, W.Load(c + W.Count));
        }
        if (relu)
        {
            lo = W.Max(lo, W.Create(0f));
            hi = W.Max(hi, W.Create(0f));
        }
        W.Store(lo, c);
        W.Store(hi, c + W.Count);
    }
}
