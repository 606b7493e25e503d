namespace Bdh.Model.Inference;

/// <summary>
/// What one layer did with a stepped token: <paramref name="xs"/> [nh·N], the neurons it fired, and <paramref name="xy"/>
/// = xs ⊙ ys [nh·N], the neurons its attention read also fired (ys is computed only where xs fires, as only xs ⊙ ys is
/// used), with <paramref name="memory"/> after the layer took the token. The spans are the stepper's own: read them now.
/// </summary>
public delegate void LayerObserver<T>(int layer, ReadOnlySpan<T> xs, ReadOnlySpan<T> xy, IAttentionMemory<T> memory)
    where T : unmanaged, IFloatingPointIeee754<T>;
