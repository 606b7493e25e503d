namespace Bdh.Model;

/// <summary>
/// What <see cref="BdhModel{T}.Forward"/> hands out as it goes, each part optional. The tensors belong to the pass's
/// graph, in the model's own layout (<see cref="LayerActivations{T}"/>): read or copy them in the callback.
/// </summary>
public sealed class ForwardObserver<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The embedding rows embed[idx] [1, B, T, D], then x = their LayerNorm, the first layer's input.</summary>
    public Action<Tensor<T>, Tensor<T>>? Embedded { get; init; }

    /// <summary>Each layer's activations, as the layer ends.</summary>
    public Action<LayerActivations<T>>? Layer { get; init; }
}

/// <summary>
/// One layer of <see cref="BdhModel{T}.Forward"/>. Heads lead, as the model computes them: [nh, B, T, ·] per head,
/// [1, B, T, ·] where the heads share a tensor.
/// </summary>
/// <param name="Layer">the layer, 0 first.</param>
/// <param name="X">the layer's input x [1, B, T, D]: attention's values.</param>
/// <param name="Xs">xs = relu(x·encoder) [nh, B, T, N]: the neurons x fires.</param>
/// <param name="Q">rope(xs) [nh, B, T, N]: attention's queries and keys.</param>
/// <param name="A">a = tril(QQᵀ, −1)·x [nh, B, T, D].</param>
/// <param name="LnA">ln(a) [nh, B, T, D].</param>
/// <param name="Ys">ys = relu(ln(a)·encoder_v) [nh, B, T, N].</param>
/// <param name="Xy">xs ⊙ ys [nh, B, T, N], after dropout.</param>
/// <param name="Decoded">Σ_h xy_h·decoder_h [1, B, T, D]: the heads concatenated times the decoder.</param>
/// <param name="Y">y = ln(decoded) [1, B, T, D].</param>
/// <param name="XPlusY">x + y [1, B, T, D].</param>
/// <param name="Output">ln(x + y) [1, B, T, D]: the next layer's x.</param>
public sealed record LayerActivations<T>(int Layer, Tensor<T> X, Tensor<T> Xs, Tensor<T> Q, Tensor<T> A, Tensor<T> LnA,
    Tensor<T> Ys, Tensor<T> Xy, Tensor<T> Decoded, Tensor<T> Y, Tensor<T> XPlusY, Tensor<T> Output)
    where T : unmanaged, IFloatingPointIeee754<T>;
