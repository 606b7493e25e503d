using System.Diagnostics;
using System.Globalization;
using Bdh.Model;
using Bdh.Model.Inference;
using Bdh.Model.Tests;
using static Bdh.Cli.Tests.CliTests;

namespace Bdh.Cli.Tests;

/// <summary>
/// What an adversarial run found: bad files and flags, two writers, signals and kills. Each bad input is
/// one line on stderr and exit code 2, and nothing the user had is lost or overwritten.
/// </summary>
public class HardeningTests
{
    /// <summary>A model so small that a step takes a few milliseconds.</summary>
    private static string[] TinyTrain(string dir, int steps, int checkpointEvery = 1_000_000) =>
        ["train", "--data", Shared.Corpus, "--layers", "1", "--embd", "16", "--heads", "2", "--mult", "8", "--batch", "2", "--block", "16",
         "--steps", steps.ToString(CultureInfo.InvariantCulture), "--eval-every", "0",
         "--checkpoint-every", checkpointEvery.ToString(CultureInfo.InvariantCulture), "--out", dir];

    private static void WaitFor(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"timed out waiting for {what}");
            Thread.Sleep(10);
        }
    }

    private static int CurveLines(string dir)
    {
        string csv = Path.Combine(dir, "loss.csv");
        if (!File.Exists(csv)) return 0;
        using var reader = new FileStream(csv, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(reader).ReadToEnd().Count(c => c == '\n');
    }

    /// <summary>Whether this process ignores signal number n (Linux: the SigIgn mask of /proc/self/status).</summary>
    private static bool IgnoredHere(int n) =>
        File.Exists("/proc/self/status") && File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:")) is { } line
        && ((ulong.Parse(line["SigIgn:".Length..].Trim(), NumberStyles.HexNumber) >> (n - 1)) & 1) == 1;

    private static void Signal(Process p, string signal) => Process.Start("kill", ["-" + signal, p.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();

    private static (int Code, string Out, string Err) Finish(Process p)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Files that make bad input: each named by a word in a test's arguments.</summary>
    private static string Make(string word, string dir)
    {
        string path = Path.Combine(dir, word);
        switch (word)
        {
            case "FIFO":
                Process.Start("mkfifo", [path])!.WaitForExit();
                break;
            case "NAN-MODEL":
                var nan = SafetensorsEdit.Of(Trained);
                BitConverter.TryWriteBytes(nan.Bytes("lm_head")[40..], float.NaN);
                nan.Save(path);
                break;
            case "LAYERS-2000":
                var deep = SafetensorsEdit.Of(Trained);
                deep.Metadata["config"] = (Checkpoint.Load(Trained).Config with { NLayer = 2000 }).ToJson();
                deep.Save(path);
                break;
            case "FIXTURE-IDX-2^40":
                var fixture = SafetensorsEdit.Of(Small);
                BitConverter.TryWriteBytes(fixture.Bytes("idx"), 1L << 40);
                fixture.Save(path);
                break;
            case "STATE-AT-MAX":
                var config = Checkpoint.Load(Trained).Config;
                new StateSnapshot(new SynapticState<float>(config.NLayer, config.NHead, config.N, config.NEmbd), int.MaxValue - 5, 65).Save(path, config);
                break;
            case "A-FOLDER":
                Directory.CreateDirectory(path);
                break;
            case "A-FILE":
                File.WriteAllText(path, "a file of the user's, to keep\n");
                break;
            case "BAD":
                File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8, 9]); // not a safetensors file; one line of text
                break;
            case "OUT":
                break; // a path the command would write: it must not
            default:
                return word;
        }
        return path;
    }

    [Theory]
    [InlineData("--checkpoint: 'FIFO' is empty or not a regular file", "sample", "-c", "FIFO", "-n", "1")]
    [InlineData("--data: 'FIFO' is empty or not a regular file", "train", "--data", "FIFO")]
    [InlineData("--data: '/dev/zero' is empty or not a regular file", "eval", "-c", "TRAINED", "--data", "/dev/zero")]
    [InlineData("--load-state: 'FIFO' is empty or not a regular file", "sample", "-c", "TRAINED", "--load-state", "FIFO")]
    [InlineData("--fixture: 'FIFO' is empty or not a regular file", "check-reference", "--fixture", "FIFO")]
    [InlineData("--data: 'A-FOLDER' is a folder, not a file", "eval", "-c", "TRAINED", "--data", "A-FOLDER")]
    [InlineData("--block: 1 x 100000 tokens make a tensor of 4e10 values", "eval", "-c", "TRAINED", "--data", "CORPUS", "--block", "100000")]
    [InlineData("--batch/--block: 16 x 100000 tokens", "train", "--data", "CORPUS", "--block", "100000", "--out", "A-FOLDER")]
    [InlineData("--block: no window of 2147483648 bytes", "eval", "-c", "TRAINED", "--data", "CORPUS", "--block", "2147483647")]
    [InlineData("--max-positions: 4194304 positions x N = 512", "export-onnx", "-c", "TRAINED", "--out", "A-FOLDER", "--max-positions", "4194304")]
    [InlineData("--lr: must be a finite number", "train", "--data", "CORPUS", "--lr", "Infinity", "--out", "A-FOLDER")]
    [InlineData("--grad-accum: must be >= 1 and divide the batch (16)", "train", "--data", "CORPUS", "--grad-accum", "3", "--out", "A-FOLDER")]
    [InlineData("--checkpoint-every: must be >= 1", "train", "--data", "CORPUS", "--checkpoint-every", "0", "--out", "A-FOLDER")]
    [InlineData("--resume: no complete checkpoint in 'A-FOLDER' (a run killed during its first checkpoint leaves none); start over without --resume",
        "train", "--data", "CORPUS", "--out", "A-FOLDER", "--resume")]
    [InlineData("--onnx: no prefill.onnx in 'A-FOLDER' (write one with bdh export-onnx)", "sample", "--backend", "onnx", "--onnx", "A-FOLDER")]
    [InlineData("--temperature: must be a finite number", "sample", "-c", "TRAINED", "--temperature", "Infinity")]
    [InlineData("--out: 'CORPUS' is a file, not a folder", "train", "--data", "CORPUS", "--out", "CORPUS")]
    [InlineData("--out: 'CORPUS' is a file, not a folder", "export-onnx", "-c", "TRAINED", "--out", "CORPUS")]
    [InlineData("--save-state: 'A-FOLDER' is a folder", "sample", "-c", "TRAINED", "-n", "2", "--save-state", "A-FOLDER")]
    [InlineData("--save-state: no folder", "sample", "-c", "TRAINED", "-n", "2", "--save-state", "/no/such/folder/s.st")]
    [InlineData("NAN-MODEL: tensor 'lm_head' holds NaN at element 10", "eval", "-c", "NAN-MODEL", "--data", "CORPUS")]
    [InlineData("NAN-MODEL: tensor 'lm_head' holds NaN at element 10", "sample", "-c", "NAN-MODEL")]
    [InlineData("LAYERS-2000: bad config in __metadata__: n_layer: must be <= 1024 (got 2000)", "sample", "-c", "LAYERS-2000", "-n", "1")]
    [InlineData("FIXTURE-IDX-2^40: tensor 'idx' holds 1099511627776 at element 0", "check-reference", "--fixture", "FIXTURE-IDX-2^40", "--trig", "TRIG")]
    [InlineData("--tokens: the state in 'STATE-AT-MAX' is at position 2147483642", "sample", "-c", "TRAINED", "--load-state", "STATE-AT-MAX", "-n", "10")]
    [InlineData("--save-state: 'A-FILE' exists (pass --force to replace it)", "sample", "-c", "TRAINED", "-n", "2", "--save-state", "A-FILE")]
    [InlineData("--steps: must be >= 1", "train", "--data", "CORPUS", "--steps", "0", "--out", "A-FOLDER")]
    [InlineData("--dropout: must be in [0, 1) (got 1.5)", "train", "--data", "CORPUS", "--dropout", "1.5", "--out", "A-FOLDER")]
    [InlineData("--layers: must be >= 1 (got 0)", "train", "--data", "CORPUS", "--layers", "0", "--out", "A-FOLDER")]
    [InlineData("--out: 'A-FILE' is a file, not a folder", "graph", "-c", "TRAINED", "--out", "A-FILE")]
    [InlineData("--out: 'A-FILE' is a file, not a folder", "synapses", "-c", "TRAINED", "--with", "CORPUS", "--without", "CORPUS", "--out", "A-FILE")]
    [InlineData("--with: 'A-FOLDER' is a folder, not a file", "synapses", "-c", "TRAINED", "--with", "A-FOLDER", "--without", "CORPUS", "--out", "unused-out")]
    [InlineData("no command 'foo' (see bdh --help)", "foo")]
    [InlineData("no command 'foo' (see bdh --help)", "--ignore-limits", "foo")]
    [InlineData("Cannot parse argument 'abc' for option '--tokens' as a whole number up to 2147483647. (see bdh sample --help)", "sample", "-n", "abc")]
    [InlineData("Cannot parse argument '-1' for option '--seed' as a whole number >= 0. (see bdh train --help)", "train", "--seed", "-1")]
    [InlineData("Argument 'huge' not recognized. Must be one of: 'cpu' 'paper'", "train", "--preset", "huge")]
    [InlineData("--data: '/no/such/file.txt' no such file", "train", "--data", "/no/such/file.txt")]
    [InlineData("--mult: the model comes from --init; leave out --mult", "train", "--init", "TRAINED", "--mult", "8", "--data", "CORPUS", "--out", "OUT")]
    [InlineData("BAD: not a valid safetensors file: header length", "train", "--init", "BAD", "--data", "CORPUS", "--out", "OUT")]
    [InlineData("--checkpoint: no such file or folder '/no/such/model.safetensors'", "sample", "--checkpoint", "/no/such/model.safetensors")]
    [InlineData("BAD: not a valid safetensors file: header length", "sample", "--checkpoint", "BAD", "--tokens", "5")]
    [InlineData("--backend onnx: needs --onnx DIR (a bdh export-onnx folder)", "sample", "--backend", "onnx")]
    [InlineData("--onnx: needs --backend onnx", "sample", "--checkpoint", "TRAINED", "--onnx", "/tmp")]
    [InlineData("--block: must be >= 1", "eval", "--checkpoint", "TRAINED", "--block", "0")]
    [InlineData("--fixture: '/no/such/fixture.safetensors' no such file", "check-reference", "--fixture", "/no/such/fixture.safetensors")]
    [InlineData("--trig: '/no/such/trig.safetensors' no such file", "check-reference", "--fixture", "SMALL", "--trig", "/no/such/trig.safetensors")]
    [InlineData("BAD: not a valid safetensors file: header length", "check-reference", "--fixture", "SMALL", "--trig", "BAD")]
    [InlineData("--max-positions: must be >= 1", "export-onnx", "--checkpoint", "TRAINED", "--out", "OUT", "--max-positions", "0")]
    [InlineData("the models differ in n_embd (128 and 32); merging needs the same n_embd", "merge", "TRAINED", "SMALL", "--out", "OUT")]
    [InlineData("BAD: not a valid safetensors file: header length", "merge", "TRAINED", "BAD", "--out", "OUT")]
    [InlineData("B: no such file or folder '/no/such/model.safetensors'", "merge", "TRAINED", "/no/such/model.safetensors", "--out", "OUT")]
    [InlineData("--out: 'BAD' exists (pass --force to replace it)", "merge", "TRAINED", "TRAINED", "--out", "BAD")]
    [InlineData("Argument 'c' not recognized. Must be one of: 'a' 'b' 'mean'", "merge", "TRAINED", "TRAINED", "--out", "OUT", "--embed", "c")]
    [InlineData("--beta: must be > 0", "graph", "-c", "TRAINED", "--out", "OUT", "--beta", "0")]
    [InlineData("--sweep: 'x' is not a number > 0", "graph", "-c", "TRAINED", "--out", "OUT", "--sweep", "1,x")]
    [InlineData("BAD: not a valid safetensors file: header length", "graph", "-c", "BAD", "--out", "OUT")]
    [InlineData("--with: '/no/such/with.txt' no such file", "synapses", "-c", "TRAINED", "--with", "/no/such/with.txt", "--without", "BAD", "--out", "OUT")]
    [InlineData("--with: 'BAD' needs at least 2 non-empty lines (one text each), has 1", "synapses", "-c", "TRAINED", "--with", "BAD", "--without", "BAD", "--out", "OUT")]
    [InlineData("--top: must be >= 1", "synapses", "-c", "TRAINED", "--with", "BAD", "--without", "BAD", "--out", "OUT", "--top", "0")]
    public void EveryBadInputIsOneLineNamingItAndExitCode2(string message, params string[] args)
    {
        using var dir = new TempDir();
        var paths = args.Select(a => a switch
        {
            "TRAINED" => Trained, "SMALL" => Small, "CORPUS" => Shared.Corpus,
            "TRIG" => Path.Combine(Shared.Fixtures, "torch-float32-trig.safetensors"), _ => Make(a.TrimEnd('/'), dir.Path),
        }).ToArray();
        foreach (var (word, path) in args.Zip(paths).Distinct()) message = message.Replace(word.TrimEnd('/'), path);
        if (message.Contains("CORPUS")) message = message.Replace("CORPUS", Shared.Corpus);
        var before = Files(dir.Path);
        var (code, stdout, stderr) = Run(paths);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Equal($"bdh: {message}", stderr.TrimEnd('\n')[..Math.Min(stderr.TrimEnd('\n').Length, message.Length + 5)]);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(before, Files(dir.Path)); // nothing written, nothing replaced
    }

    /// <summary>Every file under <paramref name="folder"/>, with a hash of its bytes (none for an empty one: a FIFO is, and reading it would block).</summary>
    private static string[] Files(string folder) => [.. Directory.GetFiles(folder, "*", SearchOption.AllDirectories).Order()
        .Select(f => new FileInfo(f).Length == 0 ? $"{f} empty" : $"{f} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))}")];

    [Fact]
    public void ResumingARunAlreadyAtItsLastStepIsRefusedAndChangesNothing()
    {
        using var dir = new TempDir();
        Assert.Equal(0, Run(TinyTrain(dir.Path, 3)).Code);
        string curve = File.ReadAllText(Path.Combine(dir.Path, "loss.csv"));
        var checkpoints = Directory.GetFiles(dir.Path, "*", SearchOption.AllDirectories).Select(File.GetLastWriteTimeUtc).ToArray();
        var (code, stdout, stderr) = Run([.. TinyTrain(dir.Path, 2), "--resume"]);
        Assert.Equal((2, ""), (code, stdout));
        Assert.Equal($"bdh: --steps 2: the run in '{dir.Path}' is already at step 3; pass a larger --steps to train it further\n", stderr);
        Assert.Equal(curve, File.ReadAllText(Path.Combine(dir.Path, "loss.csv")));
        Assert.Equal(checkpoints, Directory.GetFiles(dir.Path, "*", SearchOption.AllDirectories).Select(File.GetLastWriteTimeUtc));
    }

    [Fact]
    public void ASavedStateIsContinuedInPlaceAndReplacesAnotherFileOnlyWithForce()
    {
        using var dir = new TempDir();
        string state = Path.Combine(dir.Path, "state.safetensors"), notes = Path.Combine(dir.Path, "notes.txt");
        Assert.Equal(0, Run("sample", "-c", Trained, "-n", "4", "--top-k", "1", "--save-state", state).Code);
        byte[] first = File.ReadAllBytes(state);
        // The file it loaded is the one it saves: a conversation carried on in one file, no --force needed.
        var (code, _, stderr) = Run("sample", "-c", Trained, "--load-state", state, "-p", " and", "-n", "4", "--top-k", "1", "--save-state", state);
        Assert.True(code == 0, stderr);
        Assert.NotEqual(first, File.ReadAllBytes(state));
        File.WriteAllText(notes, "keep");
        Assert.Equal(2, Run("sample", "-c", Trained, "-n", "2", "--save-state", notes).Code);
        Assert.Equal("keep", File.ReadAllText(notes));
        Assert.Equal(0, Run("sample", "-c", Trained, "-n", "2", "--save-state", notes, "--force").Code);
        Assert.Equal(7, StateSnapshot.Load(notes, Checkpoint.Load(Trained).Config).Position); // "ROMEO:" and one token read
    }

    [Fact]
    public void WorkThatCannotFitIsRefusedUpFrontAndRunsWhenAskedWithItsTimeProjected()
    {
        // 2^31 steps write ~137 GB of loss.csv: more than the RAM-backed /dev/shm holds. Refused before the folder is made.
        string dir = Path.Combine("/dev/shm", $"bdh-limits-{Environment.ProcessId}");
        string[] huge = TinyTrain(dir, int.MaxValue);
        var refused = Run(huge);
        Assert.Equal((2, ""), (refused.Code, refused.Out));
        Assert.Matches(@"^bdh: --steps 2147483647: needs about 137\.\d GB on disk in '.*', its drive has [\d.]+ GB free \(pass --ignore-limits to try anyway\)\n$", refused.Err);
        Assert.False(Directory.Exists(dir));
        try
        {
            // Asked to, it starts and projects the whole run's time from its first step.
            using var p = Start([.. huge, "--ignore-limits"]);
            WaitFor(() => CurveLines(dir) > 2, "training steps");
            Signal(p, "INT");
            var (code, _, stderr) = Finish(p);
            Assert.Equal(130, code);
            Assert.Matches(@"step 1/2147483647 .* eta \d+d \d\d:\d\d:\d\d", stderr);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void DivergedTrainingIsOneLineThatNamesTheLearningRateFlag()
    {
        using var dir = new TempDir();
        var (code, stdout, stderr) = Run([.. TinyTrain(dir.Path, 5), "--lr", "1e30"]);
        Assert.Equal((2, ""), (code, stdout));
        string last = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
        Assert.Matches(@"^bdh: the training loss at step \d+ is NaN: training diverged and stopped; no checkpoint was written \(try a lower --lr\)$", last);
    }

    [Fact]
    public void ASecondTrainerOnTheSameFolderIsRefusedAndAStaleLockIsTakenOver()
    {
        using var dir = new TempDir();
        using var first = Start(TinyTrain(dir.Path, 1_000_000));
        WaitFor(() => CurveLines(dir.Path) > 5, "the first trainer's steps");
        foreach (var args in new[] { TinyTrain(dir.Path, 10), [.. TinyTrain(dir.Path, 10), "--resume"] })
        {
            var second = Run(args);
            Assert.Equal((2, ""), (second.Code, second.Out));
            Assert.Equal($"bdh: --out: '{dir.Path}' is in use by another bdh (pid {first.Id}", second.Err[..second.Err.IndexOf(", see", StringComparison.Ordinal)]);
        }
        first.Kill(); // SIGKILL: its lock stays behind, naming a process that is gone
        first.WaitForExit();
        Assert.Equal(first.Id.ToString(CultureInfo.InvariantCulture), File.ReadAllText(Path.Combine(dir.Path, "bdh.lock")).Trim());

        string[] resume = [.. TinyTrain(dir.Path, 3), "--resume"];
        File.WriteAllText(Path.Combine(dir.Path, "loss.csv"), "step,train_loss,val_loss,seconds\n"); // no checkpoint was written yet
        var noCheckpoint = Run(resume);
        Assert.Equal(2, noCheckpoint.Code);
        Assert.Contains($"taking over the stale lock {Path.Combine(dir.Path, "bdh.lock")} (its process {first.Id} is gone)", noCheckpoint.Err);
        Assert.Contains("no complete checkpoint", noCheckpoint.Err);
        Assert.Contains("start over without --resume", noCheckpoint.Err);
        var fresh = Run(TinyTrain(dir.Path, 3)); // bdh's own loss.csv of a run with no checkpoint is replaced
        Assert.Equal(0, fresh.Code);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(dir.Path, "loss.csv")).Length);
        Assert.False(File.Exists(Path.Combine(dir.Path, "bdh.lock")));
    }

    [SkippableTheory]
    [InlineData("INT", 130)]
    [InlineData("TERM", 143)]
    public void ASignalSavesACheckpointSaysSoAndExits128PlusItsNumber(string signal, int expectedCode)
    {
        // A command started in the background by a shell without job control ignores SIGINT, and its children inherit
        // that (bdh, like any program, then never sees it): such a test run cannot send it.
        Skip.If(IgnoredHere(expectedCode - 128), $"SIG{signal} is ignored in this test process (started in the background?), and bdh would inherit that");
        using var interrupted = new TempDir();
        using var straight = new TempDir();
        using var p = Start(TinyTrain(interrupted.Path, 1_000_000));
        WaitFor(() => CurveLines(interrupted.Path) > 20, "training steps"); // loss.csv is flushed every step
        Signal(p, signal);
        var (code, _, stderr) = Finish(p);
        Assert.Equal(expectedCode, code);
        var stopped = System.Text.RegularExpressions.Regex.Match(stderr, $@"bdh: stopped by SIG{signal} at step (\d+); checkpoint saved, continue with --resume --out ");
        Assert.True(stopped.Success, stderr);
        int step = int.Parse(stopped.Groups[1].Value);
        Assert.Equal(step, StepOf(new CheckpointStore(interrupted.Path).Latest));
        Assert.Equal(step + 1, File.ReadAllLines(Path.Combine(interrupted.Path, "loss.csv")).Length);

        // Resumed to a few more steps, it ends bit for bit where an uninterrupted run ends.
        var resumed = Run([.. TinyTrain(interrupted.Path, step + 3), "--resume"]);
        var whole = Run(TinyTrain(straight.Path, step + 3));
        Assert.Equal((0, 0), (resumed.Code, whole.Code));
        string name = $"step-{step + 3:D6}.safetensors";
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight.Path, "checkpoints", name)), File.ReadAllBytes(Path.Combine(interrupted.Path, "checkpoints", name)));
    }

    [Fact]
    public void AfterAKillLossCsvKeepsItsLinesIsRepairedAndTheRunResumes()
    {
        using var dir = new TempDir();
        string csv = Path.Combine(dir.Path, "loss.csv");
        using (var p = Start(TinyTrain(dir.Path, 1_000_000, checkpointEvery: 20)))
        {
            WaitFor(() => StepOf(new CheckpointStore(dir.Path).Latest) >= 40, "two checkpoints");
            p.Kill(); // SIGKILL
            p.WaitForExit();
        }
        int kept = File.ReadAllLines(csv).Length - 1;
        Assert.True(kept >= 40, $"{kept} lines of loss.csv survived the kill"); // flushed every step, not only at validation
        File.AppendAllText(csv, "100000,2.5"); // a line the kill cut short
        // What a kill during a checkpoint write leaves: its temporary file.
        File.WriteAllBytes(Path.Combine(dir.Path, "checkpoints", ".step-000099.safetensors.4242.tmp"), [1, 2]);

        int last = StepOf(new CheckpointStore(dir.Path).Latest);
        var resumed = Run([.. TinyTrain(dir.Path, last + 5, checkpointEvery: 20), "--resume"]);
        Assert.Equal(0, resumed.Code);
        Assert.Matches("dropped its partial last line '[0-9.,]*100000,2.5'", resumed.Err);
        Assert.Matches(@"removed [1-9]\d* unfinished checkpoint file\(s\)", resumed.Err); // ours, and one the kill may have cut
        Assert.Empty(Directory.GetFiles(Path.Combine(dir.Path, "checkpoints"), "*.tmp"));
        // One line per step, in order: the lines after the checkpoint were dropped and written again.
        var steps = File.ReadAllLines(csv).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToArray();
        Assert.Equal(Enumerable.Range(1, last + 5), steps);
    }

    [Fact]
    public void ALossCsvThatBdhDidNotWriteIsNeverOverwritten()
    {
        using var dir = new TempDir();
        string csv = Path.Combine(dir.Path, "loss.csv");
        File.WriteAllText(csv, "my,own,numbers\n1,2,3\n");
        var fresh = Run(TinyTrain(dir.Path, 2));
        Assert.Equal(2, fresh.Code);
        Assert.Equal($"bdh: --out: '{csv}' was not written by bdh; move it away or choose another --out\n", fresh.Err);
        Assert.Equal("my,own,numbers\n1,2,3\n", File.ReadAllText(csv));
        Assert.Equal([csv], Directory.GetFileSystemEntries(dir.Path));

        // A FIFO in its place is refused, not waited on.
        using (var other = new TempDir())
        {
            string fifo = Make("FIFO", other.Path);
            File.Move(fifo, Path.Combine(other.Path, "loss.csv"));
            var blocked = Run(TinyTrain(other.Path, 2));
            Assert.Equal($"bdh: --out: '{Path.Combine(other.Path, "loss.csv")}' is empty or not a regular file (a FIFO or a device)\n", blocked.Err);
        }

        // A run of bdh's whose loss.csv gained a line that is not bdh's: resume names it and changes nothing.
        File.Delete(csv);
        Assert.Equal(0, Run(TinyTrain(dir.Path, 2, checkpointEvery: 1)).Code);
        var lines = File.ReadAllLines(csv).ToList();
        lines.Insert(2, "not,a,number,here");
        File.WriteAllLines(csv, lines);
        var resumed = Run([.. TinyTrain(dir.Path, 4), "--resume"]);
        Assert.Equal(2, resumed.Code);
        Assert.Equal($"bdh: --resume: line 3 of '{csv}' is not one of bdh's: 'not,a,number,here'\n", resumed.Err);
        Assert.Equal(lines, File.ReadAllLines(csv));
    }

    [Fact]
    public void OnnxExportsAreWholeAndTheirLengthsChecked()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        Assert.Equal(0, Run("export-onnx", "-c", Trained, "--out", a.Path, "--max-positions", "64").Code);
        Assert.Equal(0, Run("export-onnx", "-c", Trained, "--out", b.Path, "--max-positions", "32").Code);
        string[] sample = ["sample", "--backend", "onnx", "--onnx", a.Path, "--device", "cpu", "-n", "5", "--top-k", "1"];

        var huge = Run([.. sample[..^4], "-n", "2147483647"]);
        Assert.Equal((2, ""), (huge.Code, huge.Out));
        Assert.Contains("2147483652 positions: this export holds RoPE tables for 64", huge.Err);

        // --force writes the new export beside the folder and moves it in whole: no temporary folder stays.
        var forced = Run("export-onnx", "-c", Trained, "--out", a.Path, "--max-positions", "48", "--force");
        Assert.Equal(0, forced.Code);
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(a.Path)!, $".{Path.GetFileName(a.Path)}.export-*"));
        Assert.Equal(0, Run(sample).Code);

        // A swap that fails half-way (step.onnx cannot be replaced: a folder stands in its place) leaves the old
        // prefill.onnx as it was, not the new one beside an old step.onnx, and no temporary folder.
        using var c = new TempDir();
        Assert.Equal(0, Run("export-onnx", "-c", Trained, "--out", c.Path, "--max-positions", "40").Code);
        File.Delete(Path.Combine(c.Path, "step.onnx"));
        Directory.CreateDirectory(Path.Combine(c.Path, "step.onnx"));
        byte[] oldPrefill = File.ReadAllBytes(Path.Combine(c.Path, "prefill.onnx"));
        var failed = Run("export-onnx", "-c", Trained, "--out", c.Path, "--max-positions", "56", "--force");
        Assert.Equal((2, ""), (failed.Code, failed.Out));
        Assert.StartsWith($"bdh: --out: could not move the new export into '{c.Path}' (", failed.Err);
        Assert.EndsWith("the export that was there is kept as it was\n", failed.Err);
        Assert.Equal(oldPrefill, File.ReadAllBytes(Path.Combine(c.Path, "prefill.onnx")));
        Assert.Equal(["prefill.onnx"], Directory.GetFiles(c.Path).Select(Path.GetFileName));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(c.Path)!, $".{Path.GetFileName(c.Path)}.export-*"));

        // The metadata of both graphs edited alike, each value the same length so the protobuf stays whole:
        // a position past the RoPE tables, then a config that does not describe the graphs, then one that is invalid.
        void EditBoth(string from, string to)
        {
            foreach (var graph in new[] { "prefill.onnx", "step.onnx" })
            {
                string path = Path.Combine(a.Path, graph);
                File.WriteAllBytes(path, Replace(File.ReadAllBytes(path), from, to));
            }
        }
        EditBoth("bdh.max_positions\u0012\u000248", "bdh.max_positions\u0012\u000299"); // the protobuf entry: key, then value of length 2
        var pastTables = Run([.. sample[..^4], "-n", "90"]);
        Assert.Equal(2, pastTables.Code);
        Assert.StartsWith("bdh: step.onnx: ONNX Runtime failed: ", pastTables.Err);
        Assert.Single(pastTables.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        foreach (var (from, to, message) in new[]
        {
            ("\"n_layer\":4", "\"n_layer\":3", "bdh: prefill.onnx: its inputs and outputs are not those its bdh.config metadata describes"),
            ("\"n_layer\":3", "\"n_layer\":0", "bdh: prefill.onnx: bad bdh.config metadata: n_layer: must be >= 1 (got 0)"),
        })
        {
            EditBoth(from, to);
            var corrupt = Run(sample);
            Assert.Equal((2, ""), (corrupt.Code, corrupt.Out));
            Assert.StartsWith(message, corrupt.Err);
            Assert.Single(corrupt.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        }

        File.Copy(Path.Combine(b.Path, "prefill.onnx"), Path.Combine(a.Path, "prefill.onnx"), overwrite: true);
        var mixed = Run(sample);
        Assert.Equal((2, ""), (mixed.Code, mixed.Out));
        Assert.Equal("bdh: step.onnx: not from the same export as prefill.onnx (their bdh.config, bdh.max_positions or bdh.export_id differ); export again\n", mixed.Err);
    }

    private static byte[] Replace(byte[] bytes, string from, string to)
    {
        byte[] a = System.Text.Encoding.UTF8.GetBytes(from), b = System.Text.Encoding.UTF8.GetBytes(to);
        int at = bytes.AsSpan().IndexOf(a);
        Assert.True(at >= 0, $"'{from}' not found");
        b.CopyTo(bytes, at);
        return bytes;
    }
}
