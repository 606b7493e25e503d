using Bdh.Tensors.Kernels;

namespace Bdh.Model.Inference;

/// <summary>
/// The encoders laid out for one token at a time, 72 MB on the paper config: made once per model, read by every
/// stepper of it (they never write it).
/// </summary>
public sealed class StepperLayouts<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>encoder_v by neuron, [nh, N, D]: column n of head h's [D, N] block as a contiguous row, so a token reads only the columns it needs.</summary>
    internal T[] EncoderVByNeuron { get; }
    /// <summary>float only: xs = relu(x·encoder[h]) computing only the neurons that can fire.</summary>
    internal ScreenedReluProduct? Encoder { get; }

    private StepperLayouts(BdhModel<T> model)
    {
        var c = model.Config;
        EncoderVByNeuron = new T[c.NHead * c.N * c.NEmbd];
        Layout.SwapAxes(model.EncoderV.Value, 1, 2, Tensor<T>.From(EncoderVByNeuron, c.NHead, c.N, c.NEmbd), accumulate: false); // [nh, D, N] → [nh, N, D]
        Encoder = model.Encoder.Value is Tensor<float> encoder ? new ScreenedReluProduct(encoder) : null;
    }

    /// <summary>
    /// Made on a pool thread, as ~0.3 s of it (paper config) is first touches of new pages: it overlaps with a
    /// prompt's prefill, and the first step waits.
    /// </summary>
    public static Task<StepperLayouts<T>> Make(BdhModel<T> model) => Task.Run(() => new StepperLayouts<T>(model));
}
