using System.Diagnostics;
using System.Globalization;
using Bdh.Model;

namespace Bdh.Cli;

/// <summary>
/// A training run's --out folder, written by one bdh at a time. bdh.lock holds the writer's pid: a second
/// trainer finds it and stops; a lock whose process is gone (a killed run) is taken over. loss.csv is
/// appended and flushed with every step, so a killed run keeps its curve; on resume it is cut back to
/// its last whole line and to the checkpoint's step. A file bdh did not write is never replaced.
/// </summary>
public sealed class RunFolder : IDisposable
{
    public const string LockName = "bdh.lock", CurveName = "loss.csv", ChartName = "loss.svg";
    private const string CurveHeader = "step,train_loss,val_loss,seconds";

    private readonly string _lockPath;
    private readonly bool _created;
    private StreamWriter? _curve;

    public string Dir { get; }

    private RunFolder(string dir, string lockPath, bool created) => (Dir, _lockPath, _created) = (dir, lockPath, created);

    /// <summary>Creates <paramref name="dir"/> if needed and takes its lock; <paramref name="notice"/> hears of a stale lock taken over.</summary>
    public static RunFolder Acquire(string dir, Action<string> notice)
    {
        CommonOptions.RequireFolder(dir, "--out");
        bool created = !Directory.Exists(dir);
        Directory.CreateDirectory(dir);
        string lockPath = Path.Combine(dir, LockName);
        // The lock appears whole or not at all: written beside it, then moved in without overwriting.
        string mine = Path.Combine(dir, $".{LockName}.{Environment.ProcessId}.tmp");
        File.WriteAllText(mine, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        try
        {
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    File.Move(mine, lockPath, overwrite: false);
                    return new RunFolder(dir, lockPath, created);
                }
                catch (IOException) when (File.Exists(lockPath) && attempt < 3)
                {
                    string owner = ReadOwner(lockPath);
                    if (int.TryParse(owner, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && IsBdh(pid))
                        throw new UserError($"--out: '{dir}' is in use by another bdh (pid {pid}, see {lockPath}); wait for it to finish or choose another --out");
                    notice($"taking over the stale lock {lockPath} (its process {(owner.Length > 0 ? owner : "?")} is gone)");
                    File.Delete(lockPath);
                }
            }
        }
        finally { File.Delete(mine); }
    }

    /// <summary>The pid in a lock file; "" if it went away meanwhile. Anything but a regular file there is refused, not waited on.</summary>
    private static string ReadOwner(string lockPath)
    {
        try { return System.Text.Encoding.UTF8.GetString(InputFile.ReadAll(lockPath, "--out")).Trim(); }
        catch (InputException) when (!File.Exists(lockPath)) { return ""; }
    }

    /// <summary>Whether <paramref name="pid"/> is a live bdh (run by dotnet or as its own executable); a reused pid of another program is not.</summary>
    private static bool IsBdh(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited && process.ProcessName is "dotnet" or "bdh";
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return false; }
    }

    /// <summary>
    /// Opens loss.csv for appending. A fresh run (<paramref name="resumedStep"/> null) starts it anew,
    /// replacing only a loss.csv of bdh's own (a run killed before its first checkpoint). A resumed run
    /// keeps the lines up to its step and drops a partial last line. Returns the points kept.
    /// </summary>
    public List<(int Step, double Train, double? Val)> OpenCurve(int? resumedStep, Action<string> notice)
    {
        string path = Path.Combine(Dir, CurveName);
        var kept = new List<string>();
        var points = new List<(int, double, double?)>();
        if (File.Exists(path))
        {
            string text = System.Text.Encoding.UTF8.GetString(InputFile.ReadAll(path, "--out"));
            var lines = text.Split('\n');
            if (lines[0] != CurveHeader) throw new UserError($"--out: '{path}' was not written by bdh; move it away or choose another --out");
            if (!text.EndsWith('\n') && lines.Length > 1 && resumedStep is not null)
                notice($"{path}: dropped its partial last line '{lines[^1]}' (the run was killed while writing it)");
            // Split leaves an empty string after the last '\n', or the partial line: neither is kept.
            for (int i = 1; i < lines.Length - 1 && resumedStep is int step; i++)
            {
                var point = ParseLine(lines[i]) ?? throw new UserError($"--resume: line {i + 1} of '{path}' is not one of bdh's: '{lines[i]}'");
                if (point.Step > step) break;
                kept.Add(lines[i]);
                points.Add(point);
            }
        }
        else if (resumedStep is null && File.Exists(Path.Combine(Dir, ChartName)))
            throw new UserError($"--out: '{Path.Combine(Dir, ChartName)}' was not written by this bdh run; move it away or choose another --out");
        // Written beside it and moved in, so a kill now leaves either the old curve or the new one.
        string temp = Path.Combine(Dir, $".{CurveName}.{Environment.ProcessId}.tmp");
        File.WriteAllText(temp, string.Join('\n', [CurveHeader, .. kept]) + "\n");
        File.Move(temp, path, overwrite: true);
        _curve = new StreamWriter(path, append: true) { AutoFlush = true, NewLine = "\n" }; // the same file on every OS
        return points;
    }

    /// <summary>One step's line of loss.csv, flushed to the file at once.</summary>
    public void Append(int step, double train, double? val, double seconds) => _curve!.WriteLine(string.Join(',',
        step.ToString(CultureInfo.InvariantCulture), train.ToString("R", CultureInfo.InvariantCulture),
        val?.ToString("R", CultureInfo.InvariantCulture) ?? "", seconds.ToString("0.######", CultureInfo.InvariantCulture)));

    private static (int Step, double Train, double? Val)? ParseLine(string line)
    {
        var f = line.Split(',');
        const NumberStyles number = NumberStyles.Float;
        var c = CultureInfo.InvariantCulture;
        if (f.Length != 4 || !int.TryParse(f[0], NumberStyles.None, c, out int step) || !double.TryParse(f[1], number, c, out double train)) return null;
        if (f[2].Length == 0) return (step, train, null);
        return double.TryParse(f[2], number, c, out double val) ? (step, train, val) : null;
    }

    /// <summary>Closes loss.csv and releases the lock; a folder this run created and left empty is removed.</summary>
    public void Dispose()
    {
        _curve?.Dispose();
        File.Delete(_lockPath);
        if (_created && !Directory.EnumerateFileSystemEntries(Dir).Any()) Directory.Delete(Dir);
    }
}
