using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.RegularExpressions;
using Bdh.Model.Tests;

namespace Bdh.Cli.Tests;

/// <summary>bdh serve as a process: its flags, the API key from the environment, and SIGTERM.</summary>
public class ServeCommandTests
{
    private static readonly string Trained = Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors");

    [Theory]
    [InlineData("--host", "example.org", "--host")]
    [InlineData("--port", "70000", "--port")]
    [InlineData("--queue", "-1", "--queue")]
    [InlineData("--cache-mb", "-5", "--cache-mb")]
    [InlineData("--checkpoint", "no-such-file.safetensors", "--checkpoint")]
    public void ABadFlagIsOneLineAndExitCode2(string flag, string value, string named)
    {
        string[] args = flag == "--checkpoint" ? ["serve", flag, value] : ["serve", "-c", Trained, "--port", "0", flag, value];
        var (code, stdout, stderr) = CliTests.RunWith(null, args);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(named, stderr);
    }

    [Fact]
    public void APortInUseIsOneLineAndExitCode2()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var (code, stdout, stderr) = CliTests.RunWith(null, "serve", "-c", Trained, "--host", "127.0.0.1", "--port", port.ToString());
        Assert.Equal((2, ""), (code, stdout));
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"bdh: --host/--port: cannot listen on 127.0.0.1:{port}", stderr);
    }

    [Fact]
    public async Task SigtermEndsTheOpenStreamCleanlyAndExitsZero()
    {
        using var server = CliTests.StartWith("BDH_API_KEY=from-env", "serve", "-c", Trained, "--port", "0");
        string banner = (await server.StandardError.ReadLineAsync())!;
        var address = new Uri(Regex.Match(banner, @"at (http://\S+/)").Groups[1].Value);
        using var http = new HttpClient { BaseAddress = address };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "from-env");

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("{\"prompt\": \"ROMEO:\", \"max_tokens\": 4096, \"stream\": true}", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: {", await reader.ReadLineAsync());
        using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", server.Id.ToString()])) await kill.WaitForExitAsync();
        var lines = new List<string>();
        while (await reader.ReadLineAsync() is { } line) if (line.Length > 0) lines.Add(line);
        Assert.True(server.WaitForExit(15_000), "bdh serve exits after SIGTERM");
        Assert.Equal(0, server.ExitCode);
        Assert.Equal("data: [DONE]", lines[^1]);
        Assert.Contains("\"finish_reason\":\"length\"", lines[^2]);
        Assert.True(lines.Count < 4000, "the reply was cut short");
        Assert.Contains("bdh serve: stopped", await server.StandardError.ReadToEndAsync());
    }
}
