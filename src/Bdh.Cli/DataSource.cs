using System.Security.Cryptography;
using Bdh.Model;

namespace Bdh.Cli;

/// <summary>Where training text comes from: --data, or tiny Shakespeare in the user's cache.</summary>
public static class DataSource
{
    public const string TinyShakespeareUrl = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
    public const string TinyShakespeareSha256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";

    /// <summary>$BDH_CACHE_DIR, else $XDG_CACHE_HOME/bdhnative, else ~/.cache/bdhnative.</summary>
    public static string CacheDirectory =>
        Environment.GetEnvironmentVariable("BDH_CACHE_DIR") is { Length: > 0 } dir ? dir
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "bdhnative");

    public static byte[] Load(string? path)
    {
        if (path is not null)
            return InputFile.ReadAll(path, "--data");
        string cached = Path.Combine(CacheDirectory, "tinyshakespeare.txt");
        if (File.Exists(cached)) return InputFile.ReadAll(cached, "the cached tiny Shakespeare");
        return Download(cached);
    }

    private static byte[] Download(string target)
    {
        Console.Error.WriteLine($"downloading tiny Shakespeare from {TinyShakespeareUrl}");
        byte[] bytes;
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
            using var response = http.GetAsync(TinyShakespeareUrl, HttpCompletionOption.ResponseHeadersRead).GetAwaiter().GetResult();
            response.EnsureSuccessStatusCode();
            long? total = response.Content.Headers.ContentLength;
            using var stream = response.Content.ReadAsStream();
            using var buffer = new MemoryStream();
            var chunk = new byte[1 << 16];
            int read;
            while ((read = stream.Read(chunk)) > 0)
            {
                buffer.Write(chunk, 0, read);
                Console.Error.Write(total is long t ? $"\r  {buffer.Length * 100 / t,3}% of {t / 1024} KiB" : $"\r  {buffer.Length / 1024} KiB");
            }
            Console.Error.WriteLine();
            bytes = buffer.ToArray();
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            throw new UserError($"cannot download tiny Shakespeare ({e.Message}); pass --data FILE with a text file");
        }
        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (hash != TinyShakespeareSha256)
            throw new UserError($"downloaded file has sha256 {hash}, expected {TinyShakespeareSha256}; pass --data FILE");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        string temp = target + ".tmp";
        File.WriteAllBytes(temp, bytes);
        File.Move(temp, target, overwrite: true);
        return bytes;
    }
}

/// <summary>A mistake in the user's input: printed as one line, exit code 2.</summary>
public sealed class UserError(string message) : InputException(message);
