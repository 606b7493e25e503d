namespace Bdh.Model;

/// <summary>
/// A problem with what the user gave bdh (a file or an argument). The message names the file or the
/// flag and says what is wrong; the CLI prints it as one line and exits with code 2.
/// </summary>
public class InputException(string message) : Exception(message);

/// <summary>Every file a user names is checked here before it is opened or sized.</summary>
public static class InputFile
{
    /// <summary>
    /// The length of <paramref name="path"/>, which must be a regular file that is not empty and that one
    /// array can hold. .NET reports a FIFO or a device as a plain file of length 0 (opening a FIFO waits
    /// for a writer forever, /dev/zero never ends), so length 0 is refused too: no input of bdh is valid
    /// empty. Symbolic links are followed to what they name. <paramref name="what"/> leads the message
    /// (a flag such as "--data"; null when the path alone says enough).
    /// </summary>
    public static long Require(string path, string? what = null)
    {
        string prefix = what is null ? $"{path}: " : $"{what}: '{path}' ";
        FileSystemInfo info = new FileInfo(path);
        if (info.LinkTarget is not null) info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
        if (Directory.Exists(info.FullName)) throw new InputException(prefix + "is a folder, not a file");
        if (!info.Exists) throw new InputException(prefix + "no such file");
        long length = ((FileInfo)info).Length;
        if (length == 0) throw new InputException(prefix + "is empty or not a regular file (a FIFO or a device)");
        if (length > Array.MaxLength) throw new InputException(prefix + $"is {length:N0} bytes; bdh reads files of up to {Array.MaxLength:N0} bytes");
        return length;
    }

    /// <summary>All bytes of a file checked by <see cref="Require"/>; read errors become an <see cref="InputException"/>.</summary>
    public static byte[] ReadAll(string path, string? what = null)
    {
        Require(path, what);
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"{(what is null ? "" : what + ": ")}{path}: cannot read: {e.Message}");
        }
    }
}

/// <summary>How much memory this process may use, for refusing work that cannot fit before it starts.</summary>
public static class MemoryBudget
{
    /// <summary>Bytes the runtime may use: physical memory or the container's limit.</summary>
    public static long Available => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>
    /// Whether <see cref="Require"/> refuses (the default). The estimates are upper bounds: an application whose user
    /// asks to try anyway (swap, a machine the runtime misjudges) turns this off.
    /// </summary>
    public static bool Enforced { get; set; } = true;

    /// <summary>Throws a <see cref="LimitException"/> led by <paramref name="what"/> when <paramref name="bytes"/> exceeds what is available.</summary>
    public static void Require(double bytes, string what)
    {
        if (Enforced && bytes > Available)
            throw new LimitException($"{what}: needs about {bytes / 1e9:0.0} GB of memory, this machine has {Available / 1e9:0.0} GB");
    }
}

/// <summary>Work refused because its estimate exceeds what the machine has, not because it is malformed: it may be tried anyway.</summary>
public sealed class LimitException(string message) : InputException(message);
