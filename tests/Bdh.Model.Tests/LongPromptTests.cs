using Bdh.Model.Inference;
using Bdh.Model.Text;

namespace Bdh.Model.Tests;

/// <summary>A prompt longer than <see cref="FastStepper{T}.ParallelPrefillTokens"/> is read in parallel up to there and stepped after.</summary>
public class LongPromptTests
{
    [Fact]
    public void AChunkedPrefillGivesTheLogitsAndStateOfOneParallelPass()
    {
        var model = BdhLanguageModel.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors")).Weights;
        int[] prompt = ByteTokens.Encode(File.ReadAllText(Shared.Corpus)[..(FastStepper<float>.ParallelPrefillTokens + 77)]);
        var chunked = FastStepper<float>.Recurrent(model);
        var whole = FastStepper<float>.Recurrent(model);
        float[] chunkedLogits = chunked.Prefill(prompt).ToArray();
        int observed = 0;
        float[] wholeLogits = whole.Prefill(prompt, new ForwardObserver<float> { Layer = _ => observed++ }).ToArray(); // an observed prefill is one parallel pass
        Assert.Equal(model.Config.NLayer, observed);
        Assert.Equal(prompt.Length, chunked.Position);
        Assert.Equal(prompt.Length, whole.Position);
        for (int v = 0; v < wholeLogits.Length; v++) Assert.Equal(wholeLogits[v], chunkedLogits[v], 1e-3f);
        Assert.Equal(Array.IndexOf(wholeLogits, wholeLogits.Max()), Array.IndexOf(chunkedLogits, chunkedLogits.Max()));
        var (rhoChunked, rhoWhole) = (((SynapticState<float>)chunked.Memory).Rho, ((SynapticState<float>)whole.Memory).Rho);
        for (int layer = 0; layer < rhoWhole.Length; layer++)
        {
            float scale = rhoWhole[layer].Max(Math.Abs);
            Assert.True(rhoWhole[layer].Zip(rhoChunked[layer]).Max(p => Math.Abs(p.First - p.Second)) <= 1e-4f * scale, $"layer {layer}'s rho");
        }
    }

    [Fact]
    public void CopyRhoAddsThePendingTokensWithoutFlushingThem()
    {
        var model = BdhLanguageModel.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors")).Weights;
        var stepper = FastStepper<float>.Recurrent(model);
        stepper.Prefill(ByteTokens.Encode("ROMEO:")); // 6 tokens: they wait in the pending buffer, ρ itself is still zero
        var state = (SynapticState<float>)stepper.Memory;
        var copies = Enumerable.Range(0, model.Config.NLayer).Select(_ => new float[state.Heads * state.N * state.D]).ToArray();
        for (int layer = 0; layer < copies.Length; layer++) state.CopyRho(layer, copies[layer]);
        var observed = stepper.Step('!');                 // reads ρ plus the pending tokens the copy did not flush
        var unobserved = FastStepper<float>.Recurrent(model);
        unobserved.Prefill(ByteTokens.Encode("ROMEO:"));
        Assert.Equal(unobserved.Step('!').ToArray(), observed.ToArray()); // bit for bit: copying changed nothing
        for (int layer = 0; layer < copies.Length; layer++) Assert.Contains(copies[layer], w => w != 0); // the pending tokens are in the copy
        var flushed = FastStepper<float>.Recurrent(model);
        flushed.Prefill(ByteTokens.Encode("ROMEO:"));
        var rho = ((SynapticState<float>)flushed.Memory).Rho;
        for (int layer = 0; layer < copies.Length; layer++) Assert.Equal(rho[layer], copies[layer]);
    }
}
