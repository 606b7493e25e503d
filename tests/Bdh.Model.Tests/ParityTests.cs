using System.Buffers.Binary;
using System.Numerics;
using Bdh.Tensors.Kernels;

namespace Bdh.Model.Tests;

public class ParityTests(ITestOutputHelper output)
{
    [Theory]
    [MemberData(nameof(Shared.ParityFixtures), MemberType = typeof(Shared))]
    public void EveryGroupOfTheFixtureMatchesTheReference(string fixture)
    {
        var report = ReferenceCheck.Run(Path.Combine(Shared.Fixtures, fixture), Shared.Trig);
        var results = report.Results;
        foreach (var r in results) output.WriteLine(r.ToString());
        output.WriteLine(report.OurTrig.ToString());
        string[] groups = ["f32 logits", "f32 loss", "f32 grad encoder", "trace (", "f64 logits", "f64 loss", "f64 grad decoder",
            "f64 ref-trig logits", "f64 ref-trig loss", "f64 ref-trig grad decoder",
            "adamw step 1", "loss after step 1", "adamw step 2", "greedy tokens, full", "greedy tokens, cached", "greedy tokens, recurrent"];
        Assert.All(groups, g => Assert.Contains(results, r => r.Group.StartsWith(g, StringComparison.Ordinal)));
        Assert.All(results, r => Assert.True(r.Passed, r.ToString()));
        Assert.All(results.Where(r => r.Group.StartsWith("f64 ref-trig", StringComparison.Ordinal)),
            r => Assert.Equal(ReferenceCheck.Float64ReferenceTrigTolerance, r.Tolerance));
        // Our trig has the reference's bits on every phase of the fixture, so our own float64 run meets 1e-12 as well.
        Assert.Equal((0, 0), (report.OurTrig.CosDiffer, report.OurTrig.SinDiffer));
        Assert.All(results.Where(r => r.Group.StartsWith("f64 ", StringComparison.Ordinal)),
            r => Assert.True(r.MaxError <= ReferenceCheck.Float64ReferenceTrigTolerance, r.ToString()));
    }

    [Theory]
    [MemberData(nameof(Shared.ParityFixtures), MemberType = typeof(Shared))]
    public void TheTrigReportCountsEveryValueOfTheFloat64RopeTableWhereAnotherTrigDiffers(string fixture)
    {
        // Correctly rounded cos and sin: PyTorch's are not, on a few percent of the angles.
        static void CorrectlyRounded(ReadOnlySpan<float> x, Span<float> sin, Span<float> cos)
        {
            for (int i = 0; i < x.Length; i++) (sin[i], cos[i]) = ((float)Math.Sin(x[i]), (float)Math.Cos(x[i]));
        }
        var file = SafetensorsFile.Read(Path.Combine(Shared.Fixtures, fixture));
        var model = Checkpoint.LoadModel<float>(file);
        int t = file.Entry("idx").Shape[1];
        var ours = Rope.Table(model.Freqs, t, CorrectlyRounded);
        var theirs = Rope.Table(model.Freqs, t, Shared.Trig.SinCos);
        long Ulps(float a, float b) => Math.Abs(ReferenceTrig.OrderedBits(a) - ReferenceTrig.OrderedBits(b));
        var cosUlps = ours.Cos.Zip(theirs.Cos, Ulps).ToArray();
        var sinUlps = ours.Sin.Zip(theirs.Sin, Ulps).ToArray();

        var report = ReferenceCheck.CompareRopeTrig(file, model.Config, Shared.Trig, CorrectlyRounded);
        output.WriteLine(report.ToString());
        Assert.Equal(new TrigComparison(ReferenceTrig.FileName, t * model.Config.N, cosUlps.Count(u => u != 0), cosUlps.Max(), sinUlps.Count(u => u != 0), sinUlps.Max()), report);
        Assert.True(report.CosDiffer > 0, "correctly rounded cos differs from PyTorch's somewhere");
        Assert.Equal(1, report.CosMaxUlps);
    }

    [Fact]
    public void TorchTrigHasTheReferencesBitsOnEveryAngleOfTheTrigFile()
    {
        // Every cos and sin in the file, at this process's vector width (CliTests runs check-reference at the others).
        var report = Shared.Trig.Compare(Shared.Trig.Angles, TorchTrig.SinCos);
        output.WriteLine($"Vector<float>.Count = {Vector<float>.Count}: {report}");
        Assert.Equal(new TrigComparison(ReferenceTrig.FileName, Shared.Trig.Angles.Length, 0, 0, 0, 0), report);
    }

    [Theory]
    [InlineData("grad.encoder", true)]
    [InlineData("adamw.step2.decoder", true)]
    [InlineData("f64.grad.encoder", false)]
    [InlineData("logits", false)]
    public void AReportSaysWhenOnlyFloat32GradientsDiffer(string tensor, bool onlyFloat32Gradients)
    {
        // One value of the tensor moved away from zero by 0.05, as a ReLU input on the other side of zero moves a float32
        // gradient. (Away from zero: AdamW's first step, which runs on the fixture's gradients, moves by lr·sign(g) alone.)
        var edit = SafetensorsEdit.Of(Path.Combine(Shared.Fixtures, "bdh-reference-small.safetensors"));
        var bytes = edit.Bytes(tensor);
        if (edit.Header[tensor]!["dtype"]!.GetValue<string>() == "F64")
        {
            double value = BinaryPrimitives.ReadDoubleLittleEndian(bytes);
            BinaryPrimitives.WriteDoubleLittleEndian(bytes, value + Math.CopySign(0.05, value));
        }
        else
        {
            float value = BinaryPrimitives.ReadSingleLittleEndian(bytes);
            BinaryPrimitives.WriteSingleLittleEndian(bytes, value + MathF.CopySign(0.05f, value));
        }
        using var dir = new TempDir();

        var report = ReferenceCheck.Run(edit.Save(Path.Combine(dir.Path, "edited.safetensors")), Shared.Trig);

        Assert.False(report.Passed);
        Assert.Equal(onlyFloat32Gradients, report.OnlyFloat32GradientsDiffer);
    }

    [Fact]
    public void APhaseMissingFromTheTrigFileIsAnErrorNamingIt()
    {
        string fixture = Path.Combine(Shared.Fixtures, "bdh-reference-small.safetensors");
        var model = Checkpoint.LoadModel<float>(SafetensorsFile.Read(fixture));
        float missing = Rope.Angle(5, model.Freqs[7]);
        using var dir = new TempDir();
        string trimmed = Path.Combine(dir.Path, "trig-without-one-phase.safetensors");
        Shared.WriteTrigWithoutAngle(Shared.Trig, missing, trimmed);

        var error = Assert.Throws<SafetensorsException>(() => ReferenceCheck.Run(fixture, ReferenceTrig.Read(trimmed)));
        Assert.Contains(trimmed, error.Message);
        Assert.Contains($"no rope phase {missing:R} (bits 0x{BitConverter.SingleToInt32Bits(missing):X8})", error.Message);
    }
}
