namespace Bdh.Tensors;

/// <summary>
/// A dense, contiguous, row-major tensor of <typeparamref name="T"/> (float for training, double for
/// gradient checks). Storage comes from <see cref="TensorPool{T}"/>, its elements on a cache line, and goes back on Dispose;
/// <see cref="Reshape"/> returns a view that shares storage and owns nothing.
/// </summary>
public sealed class Tensor<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    private T[]? _array;
    private readonly bool _pooled;

    public int[] Shape { get; }
    public int Length { get; }
    public int Rank => Shape.Length;

    private Tensor(T[] array, int offset, int[] shape, bool pooled)
    {
        Shape = shape;
        Length = checked(ShapeLength(shape));
        _array = array;
        Offset = offset;
        _pooled = pooled;
    }

    /// <summary>
    /// The backing array, which holds the elements from <see cref="Offset"/> on: pooled storage starts them on a cache line
    /// (<see cref="TensorPool{T}.AlignedStart"/>) and is rounded up to a size class, so it may be longer than <see cref="Length"/>.
    /// </summary>
    public T[] Array => _array ?? throw new ObjectDisposedException(nameof(Tensor<T>));

    /// <summary>Where the elements start in <see cref="Array"/>.</summary>
    public int Offset { get; }

    public Span<T> Span => Array.AsSpan(Offset, Length);
    public Memory<T> Memory => Array.AsMemory(Offset, Length);

    /// <summary>
    /// The non-zeros of each row (of the last dimension) as the kernel that wrote this float tensor listed them
    /// (<see cref="RowLists"/>), or null. Such a kernel sets them each time it writes the tensor, null when it does not
    /// list, and the lists it replaces go back to the pool, as they do with the tensor.
    /// </summary>
    internal RowLists? NonZeroRows
    {
        get => _nonZeroRows;
        set
        {
            if (_nonZeroRows != value) _nonZeroRows?.Dispose();
            _nonZeroRows = value;
        }
    }
    private RowLists? _nonZeroRows;

    /// <summary>
    /// Writes the values of lists that are this tensor's only copy (<see cref="RowLists.IsOnlyCopy"/>) into its storage, for
    /// a reader that reads it whole; the lists stay and describe it.
    /// </summary>
    internal void WriteListedValues()
    {
        if (NonZeroRows is not { IsOnlyCopy: true } lists) return;
        lists.WriteInto((float[])(object)Array, Offset);
        lists.IsOnlyCopy = false;
    }

    /// <summary>
    /// The elements from <paramref name="offset"/> on as a matrix with rows <paramref name="stride"/> apart, with this
    /// tensor's lists of non-zeros where its rows are the lists' rows.
    /// </summary>
    internal MatrixRef<T> Matrix(int offset, int stride, bool transposed = false) =>
        NonZeroRows is { } lists && stride == lists.Cols && offset % stride == 0
            ? new(Array, Offset + offset, stride, transposed, lists, offset / stride)
            : NonZeroRows is { IsOnlyCopy: true }
                ? throw new InvalidOperationException($"a tensor whose only copy is its lists is read as rows of {NonZeroRows.Cols}, not {stride} from {offset}")
                : new(Array, Offset + offset, stride, transposed);

    /// <summary>Pooled storage with unspecified contents: every caller overwrites all of it.</summary>
    public static Tensor<T> Empty(params int[] shape)
    {
        var array = TensorPool<T>.Rent(ShapeLength(shape));
        return new(array, TensorPool<T>.AlignedStart(array), (int[])shape.Clone(), true);
    }

    public static Tensor<T> Zeros(params int[] shape)
    {
        var t = Empty(shape);
        Parallelism.ForSlices(t.Length, 1, (s, n) => t.Span.Slice(s, n).Clear()); // gradients of activations are megabytes
        return t;
    }

    /// <summary>Wraps <paramref name="data"/> without copying (not returned to the pool).</summary>
    public static Tensor<T> From(T[] data, params int[] shape)
    {
        if (data.Length != ShapeLength(shape))
            throw new ArgumentException($"{data.Length} values do not fill shape {Format(shape)}");
        return new Tensor<T>(data, 0, (int[])shape.Clone(), false);
    }

    public static Tensor<T> Normal(Rng rng, double std, params int[] shape)
    {
        var t = Empty(shape);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = T.CreateTruncating(rng.NextNormal() * std);
        return t;
    }

    public static Tensor<T> Uniform(Rng rng, double low, double high, params int[] shape)
    {
        var t = Empty(shape);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = T.CreateTruncating(low + (high - low) * rng.NextDouble());
        return t;
    }

    /// <summary>A view with a new shape over the same storage; one dimension may be -1.</summary>
    public Tensor<T> Reshape(params int[] shape)
    {
        var resolved = (int[])shape.Clone();
        int infer = System.Array.IndexOf(resolved, -1);
        if (infer >= 0)
        {
            int known = 1;
            for (int i = 0; i < resolved.Length; i++) if (i != infer) known *= resolved[i];
            resolved[infer] = known == 0 ? 0 : Length / known;
        }
        if (ShapeLength(resolved) != Length)
            throw new ArgumentException($"cannot reshape {Format(Shape)} to {Format(shape)}");
        return new Tensor<T>(Array, Offset, resolved, false);
    }

    public Tensor<T> Clone()
    {
        var t = Empty(Shape);
        Span.CopyTo(t.Span);
        return t;
    }

    /// <summary>A copy converted element by element to <typeparamref name="TOut"/>.</summary>
    public Tensor<TOut> Convert<TOut>() where TOut : unmanaged, IFloatingPointIeee754<TOut>
    {
        var t = Tensor<TOut>.Empty(Shape);
        TP.ConvertTruncating<T, TOut>(Span, t.Span);
        return t;
    }

    public T this[params int[] index]
    {
        get => Span[FlatIndex(index)];
        set => Span[FlatIndex(index)] = value;
    }

    private int FlatIndex(int[] index)
    {
        if (index.Length != Rank) throw new ArgumentException($"index of rank {index.Length} for shape {Format(Shape)}");
        int flat = 0;
        for (int d = 0; d < Rank; d++)
        {
            if ((uint)index[d] >= (uint)Shape[d]) throw new IndexOutOfRangeException($"index {index[d]} out of range for dim {d} of {Format(Shape)}");
            flat = flat * Shape[d] + index[d];
        }
        return flat;
    }

    public void Dispose()
    {
        if (_pooled && _array is not null) TensorPool<T>.Return(_array);
        _array = null;
        NonZeroRows = null; // back to the pool
    }

    public override string ToString() => $"Tensor<{typeof(T).Name}>{Format(Shape)}";

    public static int ShapeLength(ReadOnlySpan<int> shape)
    {
        int n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException("dimensions must be >= 0");
            n = checked(n * d);
        }
        return n;
    }

    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
