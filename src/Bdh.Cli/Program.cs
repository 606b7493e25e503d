using System.CommandLine;
using Bdh.Cli;
using Bdh.Model;

// The bdh command. Every command: --help; one line and exit code 2 for bad arguments or files.
var root = new RootCommand("BdhNative: train and run the Baby Dragon Hatchling (BDH) language model in pure C#.");
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(SampleCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(CheckReferenceCommand.Create());

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    Console.Error.WriteLine($"bdh: {parsed.Errors[0].Message} (see bdh {string.Join(' ', args.Take(1))} --help)");
    return 2;
}
try
{
    return parsed.Invoke();
}
catch (Exception e) when (e is UserError or ArgumentException or SafetensorsException or FileNotFoundException or DirectoryNotFoundException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"bdh: {e.Message}");
    return 2;
}
