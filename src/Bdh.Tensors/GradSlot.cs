namespace Bdh.Tensors;

/// <summary>
/// Where a backward kernel puts the gradient of one input: it overwrites <see cref="Tensor"/>, or adds to it when
/// <see cref="Accumulate"/> is set (another op has already sent this input a gradient). A gradient buffer is not
/// zeroed when it is made, so the first contribution writes it, which saves a pass of zeros over megabyte buffers.
/// </summary>
public readonly record struct GradSlot<T>(Tensor<T> Tensor, bool Accumulate) where T : unmanaged, IFloatingPointIeee754<T>;
