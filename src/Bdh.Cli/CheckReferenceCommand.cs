using System.CommandLine;
using Bdh.Model;

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
        var command = new Command("check-reference", "Check logits, loss, gradients (f32 and f64), AdamW steps, greedy tokens and the trace against a reference fixture.") { fixture };
        command.SetAction(r =>
        {
            bool allPassed = true;
            foreach (var path in r.GetValue(fixture)!)
            {
                InputFile.Require(path, "--fixture");
                var results = ReferenceCheck.Run(path); // a malformed fixture is refused before anything is printed
                Console.WriteLine($"{Path.GetFileName(path)}:");
                foreach (var result in results)
                {
                    Console.WriteLine("  " + result);
                    allPassed &= result.Passed;
                }
            }
            Console.WriteLine(allPassed ? "all groups match the reference" : "MISMATCH: some groups differ from the reference");
            return allPassed ? 0 : 1;
        });
        return command;
    }
}
