using System.CommandLine;
using System.Runtime.InteropServices;
using Bdh.Model;
using Bdh.Tensors;
using Bdh.Tensors.Kernels;

namespace Bdh.Cli;

/// <summary>bdh check-reference: everything in a reference fixture, one line per group; exit 1 on any failure.</summary>
public static class CheckReferenceCommand
{
    public static Command Create()
    {
        var fixture = new Option<string[]>("--fixture", "-f")
        {
            Description = "A fixture written by the reference bdh.py (repeatable)",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var trig = new Option<string?>("--trig")
        {
            Description = $"The reference's float32 rope cos/sin, for the float64 check at 1e-12 (default: {ReferenceTrig.FileName} beside each fixture)",
        };
        var command = new Command("check-reference",
            "Check logits, loss, gradients (f32, f64 on our rope trig and on the reference's), AdamW steps, greedy tokens and the trace against a reference fixture.")
        { fixture, trig };
        command.SetAction(r =>
        {
            var fixtures = r.GetValue(fixture)!;
            foreach (var path in fixtures)
                InputFile.Require(path, "--fixture");
            var given = r.GetValue(trig);
            if (given is not null) InputFile.Require(given, "--trig");
            var trigs = fixtures.Select(path => given ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, ReferenceTrig.FileName)).ToArray();
            foreach (var (path, trigPath) in fixtures.Zip(trigs))
                if (!File.Exists(trigPath)) throw new UserError($"--fixture: no {ReferenceTrig.FileName} beside '{path}' (pass --trig FILE)");

            var referenceTrigs = trigs.Distinct().ToDictionary(p => p, ReferenceTrig.Read);
            bool allPassed = true;
            foreach (var (path, trigPath) in fixtures.Zip(trigs))
            {
                var report = ReferenceCheck.Run(path, referenceTrigs[trigPath]);
                Console.WriteLine($"{Path.GetFileName(path)}:");
                foreach (var result in report.Results) Console.WriteLine("  " + result);
                Console.WriteLine("  " + report.OurTrig);
                if (report.OnlyFloat32GradientsDiffer)
                    Console.WriteLine("  only the float32 gradients differ; every float64 group matches. In a fixture this large, float32 rounding can put a " +
                        "ReLU input on the other side of zero and move a gradient by a step: README, \"How parity with the reference is proven\"");
                allPassed &= report.Passed;
            }
            foreach (var referenceTrig in referenceTrigs.Values) // every angle of the file, not only the fixtures' (informational, as the line above)
                Console.WriteLine(referenceTrig.Compare(referenceTrig.Angles, TorchTrig.SinCos));
            // Which kernels ran: results are checked at whatever width this machine (or a JIT knob) gives.
            Console.WriteLine($"kernels at {(Simd.Widest > 0 ? $"{Simd.Widest}-bit vectors" : "scalar code")} ({RuntimeInformation.ProcessArchitecture}; accelerated widths: {Simd.Accelerated}; " +
                $"rope's sin/cos {System.Numerics.Vector<float>.Count} lanes at a time)");
            Console.WriteLine(allPassed ? "all groups match the reference" : "MISMATCH: some groups differ from the reference");
            return allPassed ? 0 : 1;
        });
        return command;
    }
}
