using System.CommandLine;
using Bdh.Cli;
using Bdh.Model;

// The bdh command. Every command: --help; one line and exit code 2 for bad arguments or files.
var root = new RootCommand("BdhNative: train and run the Baby Dragon Hatchling (BDH) language model in pure C#.");
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(SampleCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(CheckReferenceCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(ExportOnnxCommand.Create());
root.Subcommands.Add(MergeCommand.Create());
root.Subcommands.Add(GraphCommand.Create());
root.Subcommands.Add(SynapsesCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Options.Add(Limits.Ignore);

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    var command = parsed.CommandResult.Command;
    string message = command != root ? ParseErrors.Readable(parsed.Errors[0].Message)
        : parsed.UnmatchedTokens.Count > 0 ? $"no command '{parsed.UnmatchedTokens[0]}'"
        : "no command given";
    Console.Error.WriteLine($"bdh: {message} (see bdh {(command == root ? "" : command.Name + " ")}--help)");
    return 2;
}
MemoryBudget.Enforced = !parsed.GetValue(Limits.Ignore);
try
{
    // Our handler below turns user errors into one line and exit code 2; anything else is a bug and keeps its trace.
    return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (LimitException e)
{
    Console.Error.WriteLine($"bdh: {e.Message} (pass {Limits.Ignore.Name} to try anyway)");
    return 2;
}
catch (Exception e) when (e is InputException or ArgumentException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"bdh: {e.Message}");
    return 2;
}
