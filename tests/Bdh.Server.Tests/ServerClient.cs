using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Bdh.Model;
using Bdh.Model.Tests;

namespace Bdh.Server.Tests;

/// <summary>One server-sent event: its name (null for plain data) and data.</summary>
public sealed record ServerEvent(string? Name, string Data)
{
    public JsonElement Json => JsonDocument.Parse(Data).RootElement;
}

/// <summary>A real HTTP client for a <see cref="BdhServer"/> started on a free loopback port.</summary>
public sealed class ServerClient : IAsyncDisposable
{
    public static readonly Lazy<BdhLanguageModel> Trained =
        new(() => BdhLanguageModel.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors")));

    private ServerClient(BdhServer server, string? apiKey)
    {
        Server = server;
        Http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        if (apiKey is not null) Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    }

    public BdhServer Server { get; }
    public HttpClient Http { get; }

    public static async Task<ServerClient> Start(ServerOptions? options = null, string? clientKey = null) =>
        new(await BdhServer.StartAsync(Trained.Value, (options ?? new ServerOptions()) with { Port = 0 }), clientKey ?? options?.ApiKey);

    public static StringContent Body(object body) => new(body as string ?? JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    public async Task<(HttpStatusCode Status, JsonElement Json)> Post(string path, object body)
    {
        using var response = await Http.PostAsync(path, Body(body));
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement);
    }

    /// <summary>Posts a streaming request and reads its events to the end of the stream.</summary>
    public async Task<List<ServerEvent>> Stream(string path, object body)
    {
        using var response = await Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = Body(body) }, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = new List<ServerEvent>();
        await foreach (var e in Events(await response.Content.ReadAsStreamAsync())) events.Add(e);
        return events;
    }

    /// <summary>Server-sent events as they arrive: "event: NAME" (optional) then "data: ...", ended by a blank line.</summary>
    public static async IAsyncEnumerable<ServerEvent> Events(Stream stream)
    {
        using var reader = new StreamReader(stream);
        string? name = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line["event: ".Length..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                yield return new ServerEvent(name, line["data: ".Length..]);
                name = null;
            }
            else Assert.Equal("", line);
        }
    }

    /// <summary>The text of a streamed reply: the completions' "text" or the chat deltas' "content", in order.</summary>
    public static string StreamedText(IEnumerable<ServerEvent> events, bool chat) => string.Concat(events
        .Where(e => e.Name is null && e.Data != "[DONE]")
        .SelectMany(e => e.Json.GetProperty("choices").EnumerateArray())
        .Select(c => chat ? (c.GetProperty("delta").TryGetProperty("content", out var content) ? content.GetString() : "") : c.GetProperty("text").GetString()));

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}
