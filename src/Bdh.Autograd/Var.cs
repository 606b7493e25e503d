namespace Bdh.Autograd;

/// <summary>
/// A node of the computation graph, micrograd-style: a tensor value, the gradient of the final
/// scalar with respect to it, the inputs it was made from, and a closure that sends its gradient
/// back to them. Leaves' gradients accumulate until <see cref="ZeroGrad"/>; an intermediate's
/// gradient is freed once <see cref="Backward"/> has passed it on.
/// </summary>
public sealed class Var<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Var<T>[] _inputs;
    private readonly IDisposable[] _saved;
    private Action? _backward;
    private readonly Tensor<T> _value;

    /// <summary>
    /// The value, whole. An op may leave its only copy in lists of its non-zeros (<see cref="RowLists.IsOnlyCopy"/>: BDH's
    /// ys and xy once trained, <see cref="Ops.MatMulRelu{T}"/> and <see cref="Ops.DropoutOfProduct{T}"/>); the first read
    /// here writes them into the tensor's storage. The ops whose kernels read such lists take <see cref="ListedValue"/>.
    /// </summary>
    public Tensor<T> Value
    {
        get
        {
            _value.WriteListedValues();
            return _value;
        }
    }

    /// <summary>The value as its op left it: a tensor whose only copy may be its lists, for the kernels that read them.</summary>
    internal Tensor<T> ListedValue => _value;
    public Tensor<T>? Grad { get; private set; }
    public bool RequiresGrad { get; }
    /// <summary>The op that made this node ("param", "const", "matmul", …), for debugging and tests.</summary>
    public string Op { get; }
    public int[] Shape => _value.Shape;
    /// <summary>Whether the value is a ReLU's output (<see cref="Ops.MatMulRelu{T}"/>): only its positive elements pass a gradient on.</summary>
    internal bool IsReluOutput { get; private set; }
    /// <summary>
    /// Whether the gradient gathered so far is already zero wherever the value is not positive (<see cref="ReluMaskedGradSlot"/>):
    /// the ReLU's backward then has nothing left to do.
    /// </summary>
    internal bool GradIsReluMasked { get; private set; }
    /// <summary>
    /// Whether this node's own backward reads its gradient only where its value is not zero (xs⊙ys of two ReLU outputs:
    /// where the product is 0, one factor is, and its ReLU or the other factor zeroes the gradient that would pass). An op
    /// that consumes it may then compute this node's gradient at those places only and write 0 at the others (where an
    /// infinite gradient would have met the zero factor and made a NaN, the result is then 0).
    /// </summary>
    internal bool GradNeededOnlyWhereNonZero { get; private set; }
    /// <summary>
    /// Whether this node's own backward takes a gradient whose only copy is lists (<see cref="RowLists.IsOnlyCopy"/>): its
    /// kernels read the lists. Any other node's gradient is written out of its lists before its backward runs.
    /// </summary>
    internal bool TakesListedGrad { get; private set; }

    private Var(Tensor<T> value, string op, bool requiresGrad, Var<T>[] inputs, IDisposable[] saved)
    {
        _value = value;
        Op = op;
        RequiresGrad = requiresGrad;
        _inputs = inputs;
        _saved = saved;
    }

    /// <summary>A trainable leaf: gradients flow into it.</summary>
    public static Var<T> Parameter(Tensor<T> value) => new(value, "param", true, [], []);

    /// <summary>A leaf that receives no gradient.</summary>
    public static Var<T> Constant(Tensor<T> value) => new(value, "const", false, [], []);

    /// <summary>
    /// The result of an op. <paramref name="backward"/> receives the new node and sends its gradient to
    /// each input that requires one, through that input's <see cref="GradSlot"/>; it is dropped under
    /// <see cref="NoGrad"/> or when no input needs a gradient, and timed only while <see cref="OpProfile"/>
    /// is on. <paramref name="saved"/> are buffers the backward pass reads, freed with the graph.
    /// </summary>
    internal static Var<T> FromOp(Tensor<T> value, string op, Var<T>[] inputs, Action<Var<T>> backward, params IDisposable[] saved)
    {
        if (OpProfile.Enabled && !NoGrad.IsActive) OpProfile.RecordForward(op, value.Shape); // training graphs only
        bool requires = !NoGrad.IsActive && inputs.Any(i => i.RequiresGrad);
        var node = new Var<T>(value, op, requires, inputs, saved);
        if (requires) node._backward = OpProfile.Enabled ? OpProfile.Timed(op, value.Shape, () => backward(node)) : () => backward(node);
        return node;
    }

    /// <summary>
    /// Where an op's backward puts this input's gradient: the buffer, made (not zeroed) on the first
    /// contribution, which writes it; every later contribution adds to it, and the lists of non-zeros the first one
    /// may have left on it (BDH's dys) would no longer describe it: they go, written into the buffer first where they were
    /// its only copy. With <paramref name="takesListedGrad"/> such lists stay: the caller's kernel adds them itself
    /// (<see cref="Tensors.Kernels.CausalLinearAttention"/>: BDH's xs, whose first gradient, from xs⊙ys, is non-zero at a
    /// few places), and the slot says Accumulate though the buffer holds nothing yet.
    /// </summary>
    internal GradSlot<T> GradSlot(bool takesListedGrad = false)
    {
        GradIsReluMasked = false;
        if (Grad is not null)
        {
            if (!takesListedGrad || Grad.NonZeroRows is not { IsOnlyCopy: true })
            {
                Grad.WriteListedValues();
                Grad.NonZeroRows = null;
            }
            return new(Grad, Accumulate: true);
        }
        Grad = Tensor<T>.Empty(Shape);
        return new(Grad, Accumulate: false);
    }

    /// <summary>
    /// Sets this node's first gradient to lists that are its only copy (<see cref="RowLists.IsOnlyCopy"/>), at places where
    /// the value is non-zero; with <paramref name="reluMasked"/> it is then also this ReLU output's masked gradient
    /// (<see cref="GradIsReluMasked"/>). Returns the gradient tensor, whose storage is not written.
    /// </summary>
    internal Tensor<T> SetListedGrad(RowLists lists, bool reluMasked = false)
    {
        if (Grad is not null) throw new InvalidOperationException($"{this} has a gradient already");
        if (reluMasked && !IsReluOutput) throw new InvalidOperationException($"{this} is not a ReLU's output");
        Grad = Tensor<T>.Empty(Shape);
        Grad.NonZeroRows = lists;
        GradIsReluMasked = reluMasked;
        return Grad;
    }

    /// <summary>Marks this node's backward as one that reads a listed gradient (see <see cref="TakesListedGrad"/>).</summary>
    internal Var<T> AsTakingListedGrad()
    {
        TakesListedGrad = true;
        return this;
    }

    /// <summary>Marks this node's value as a ReLU's output (see <see cref="IsReluOutput"/>).</summary>
    internal Var<T> AsReluOutput()
    {
        IsReluOutput = true;
        return this;
    }

    /// <summary>Marks this node's gradient as read only where its value is not zero (see <see cref="GradNeededOnlyWhereNonZero"/>).</summary>
    internal Var<T> AsGradNeededOnlyWhereNonZero()
    {
        GradNeededOnlyWhereNonZero = true;
        return this;
    }

    /// <summary>
    /// The slot of a backward that folds in this ReLU output's own backward, reading the value it reads anyway: it stores
    /// [value &gt; 0]·(slot + its contribution). The whole gradient is then masked, and the ReLU skips its pass over it.
    /// </summary>
    internal GradSlot<T> ReluMaskedGradSlot(bool takesListedGrad = false)
    {
        if (!IsReluOutput) throw new InvalidOperationException($"{this} is not a ReLU's output");
        var slot = GradSlot(takesListedGrad);
        GradIsReluMasked = true;
        return slot;
    }

    /// <summary>
    /// A leaf's gradient buffer, made as zeros when it has none: an optimizer holds it across steps, the
    /// backward passes add into it and the optimizer zeroes it after each update.
    /// </summary>
    internal Tensor<T> ZeroedGrad() => Grad ??= Tensor<T>.Zeros(Shape);

    /// <summary>Back-propagates from this scalar: d(this)/d(this) = 1, then every node in reverse topological order.</summary>
    public void Backward()
    {
        if (_value.Length != 1) throw new InvalidOperationException($"Backward() needs a scalar, not {Tensor<T>.Format(Shape)}");
        if (!RequiresGrad) throw new InvalidOperationException("nothing in this graph requires a gradient");
        var seed = GradSlot();
        seed.Tensor.Span[0] = seed.Accumulate ? seed.Tensor.Span[0] + T.One : T.One;
        var order = TopologicalOrder();
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var node = order[i];
            if (node.Grad is null) continue;
            if (!node.TakesListedGrad) node.Grad.WriteListedValues();
            node._backward?.Invoke();
            // As in PyTorch, an intermediate's gradient is dropped once sent on: nothing reads it again,
            // and keeping every one until the end would double the peak memory of a training step.
            if (node._inputs.Length > 0)
            {
                node.Grad.Dispose();
                node.Grad = null;
            }
        }
    }

    public void ZeroGrad() => Grad?.Span.Clear();

    /// <summary>
    /// Returns every intermediate buffer of the graph below this node (values, gradients, saved
    /// tensors) to the pool. Leaves — parameters and constants — are kept. Call once the step is done.
    /// </summary>
    public void ReleaseGraph()
    {
        foreach (var node in TopologicalOrder())
        {
            if (node._inputs.Length == 0) continue;
            node._value.Dispose();
            node.Grad?.Dispose();
            foreach (var s in node._saved) s.Dispose();
            node._backward = null;
        }
    }

    /// <summary>Inputs before outputs, by iterative depth-first search (no recursion limit on deep graphs).</summary>
    private List<Var<T>> TopologicalOrder()
    {
        var order = new List<Var<T>>();
        var visited = new HashSet<Var<T>>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Var<T> Node, int Next)>();
        stack.Push((this, 0));
        visited.Add(this);
        while (stack.Count > 0)
        {
            var (node, next) = stack.Pop();
            if (next < node._inputs.Length)
            {
                stack.Push((node, next + 1));
                var input = node._inputs[next];
                if (visited.Add(input)) stack.Push((input, 0));
            }
            else order.Add(node);
        }
        return order;
    }

    public static Var<T> operator +(Var<T> a, Var<T> b) => Ops.Add(a, b);
    public static Var<T> operator *(Var<T> a, Var<T> b) => Ops.Mul(a, b);

    public override string ToString() => $"Var<{typeof(T).Name}>({Op}){Tensor<T>.Format(Shape)}";
}

/// <summary>Inside <c>using (NoGrad.Scope())</c> ops record no backward pass (inference).</summary>
public static class NoGrad
{
    [ThreadStatic] private static int _depth;

    public static bool IsActive => _depth > 0;

    public static IDisposable Scope()
    {
        _depth++;
        return new Exit();
    }

    private sealed class Exit : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _depth--;
        }
    }
}
