using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Bdh.Model;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Bdh.Server;

/// <summary>
/// A <see cref="BdhLanguageModel"/> behind an OpenAI-compatible HTTP API on Kestrel: <c>POST /v1/completions</c> and
/// <c>POST /v1/chat/completions</c> (streamed as server-sent events with <c>stream: true</c>, ending with
/// <c>data: [DONE]</c>), <c>GET /v1/models</c>, <c>GET /health</c>, and the playground page at <c>/</c>.
/// </summary>
/// <remarks>
/// Chat messages are read in <see cref="Bdh.Extensions.AI.BdhChatClient"/>'s format. Each finished reply's state is
/// kept (<see cref="ConversationCache"/>), so a request that repeats a conversation and adds to it reads only what it
/// adds; <c>usage.prompt_tokens_details.cached_tokens</c> says how much it did not read. Stopping (SIGTERM under
/// <c>bdh serve</c>, or <see cref="StopAsync"/>) refuses new connections and ends each open reply at once, as a reply
/// cut short (<c>finish_reason: "length"</c>) with its final chunk and <c>[DONE]</c>; a client that disconnects
/// cancels its generation within a token.
/// </remarks>
public sealed class BdhServer : IAsyncDisposable
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private readonly WebApplication _app;
    private readonly BdhLanguageModel _model;
    private readonly ServerOptions _options;
    private readonly RequestGate _gate;
    private readonly ConversationCache _cache;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    /// <summary>Bytes of synaptic states let go since the last collection.</summary>
    private long _letGo;

    /// <summary>
    /// Every finished request lets go of a synaptic state (its session's, or the kept one it displaced), arrays on the
    /// large object heap that the GC, left to itself, collects late: under 64 concurrent streams of the <c>cpu</c> preset
    /// the process held 1.2 GB, nearly every state it had made. A background collection each time this many bytes of
    /// states have been let go keeps it near its working set.
    /// </summary>
    private const long CollectAfterBytes = 64L << 20;

    private BdhServer(BdhLanguageModel model, ServerOptions options, IPAddress address)
    {
        (_model, _options) = (model, options);
        _gate = new RequestGate(options.MaxConcurrentRequests, options.MaxQueuedRequests);
        _cache = new ConversationCache(model, options.CacheBytes);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders().SetMinimumLevel(LogLevel.Warning).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical); // a failed start (a port in use) reaches StartAsync's caller as its exception
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            kestrel.Listen(address, options.Port);
        });
        _app = builder.Build();
        _app.Use(AnswerErrorsAsJson);
        _app.Use(Authorize);
        _app.MapMethods("/health", ["GET", "HEAD"], () => Results.Json(new { status = "ok" }));
        _app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = new[] { ModelObject() } }));
        _app.MapGet("/v1/models/{id}", (string id) => id == _model.Name ? Results.Json(ModelObject())
            : throw new RequestException(404, $"no model '{id}': this server has '{_model.Name}'", "model", code: "model_not_found"));
        _app.MapPost("/v1/completions", http => Complete(http, chat: false));
        _app.MapPost("/v1/chat/completions", http => Complete(http, chat: true));
        _app.MapGet("/", http => Playground(http, "index.html"));
        _app.MapGet("/playground/{file}", (HttpContext http, string file) => Playground(http, file));
    }

    /// <summary>The one model, as <c>/v1/models</c> lists it.</summary>
    private object ModelObject() => new { id = _model.Name, @object = "model", created = _created, owned_by = "bdhnative" };

    /// <summary>The address the server listens on (with the port it got, when asked for port 0).</summary>
    public Uri Address { get; private set; } = null!;

    /// <summary>Conversations kept for later requests.</summary>
    public int KeptConversations => _cache.Count;

    /// <summary>Bytes the kept conversations hold, within <see cref="ServerOptions.CacheBytes"/>.</summary>
    public long KeptBytes => _cache.Bytes;

    /// <summary>Starts listening.</summary>
    /// <exception cref="ArgumentException">a host that is neither an IP address nor <c>localhost</c>, or an option out of its range.</exception>
    /// <exception cref="IOException">the address is in use (Kestrel's error).</exception>
    public static async Task<BdhServer> StartAsync(BdhLanguageModel model, ServerOptions options, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var address = options.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(options.Host, out var parsed) ? parsed
            : throw new ArgumentException($"host '{options.Host}' is not an IP address or localhost", nameof(options));
        var server = new BdhServer(model, options, address);
        await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
        string bound = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(bound);
        return server;
    }

    /// <summary>Completes when the server has stopped: after <see cref="StopAsync"/>, or SIGTERM / Ctrl+C.</summary>
    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    /// <summary>Stops accepting, ends the open replies cleanly and waits for them.</summary>
    public Task StopAsync() => _app.StopAsync();

    public ValueTask DisposeAsync() => _app.DisposeAsync();

    private async Task Complete(HttpContext http, bool chat)
    {
        var request = OpenAiRequest.Parse(await ReadJson(http), chat, _options);
        using var slot = await _gate.EnterAsync(http.RequestAborted)
            ?? throw new RequestException(429, $"the server is busy ({_options.MaxConcurrentRequests} requests generating, {_options.MaxQueuedRequests} waiting): retry later", type: "rate_limit_error", code: "rate_limit_exceeded");
        var stopping = _app.Lifetime.ApplicationStopping;
        using var generation = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, stopping);
        var (session, cached) = _cache.Resume(request.Prompt);
        var recorder = request.Stream && request.Activity ? new ActivityRecorder(_model.Config.NLayer) : null;
        var reply = new Reply(this, http.Response, chat, request.Stream);
        await reply.Begin(http.RequestAborted);

        var drawn = new List<int>();
        string finish = "length";
        bool finished = false;
        try
        {
            await foreach (var token in session.GenerateAsync(request.Prompt[cached..], request.Options with { Observer = recorder?.Observer }, generation.Token))
            {
                if (drawn.Count > 0 && recorder?.Take(drawn[^1]) is { } activity) await reply.Activity(activity, http.RequestAborted);
                drawn.Add(token.Id);
                await reply.Text(token.Text, http.RequestAborted);
                if (token.Finish is FinishReason reason) finish = reason == FinishReason.Stop ? "stop" : "length";
            }
            finished = true;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested && !http.RequestAborted.IsCancellationRequested)
        {
            // The server is stopping: the reply ends here, as one cut short, and its state is not kept.
        }
        if (finished) _cache.Keep([.. request.Prompt, .. drawn], session);
        LetGo(_model.StateBytes);
        await reply.End(finish, new Usage(request.Prompt.Length, drawn.Count, request.Prompt.Length + drawn.Count, new PromptDetails(cached)),
            request.IncludeUsage, http.RequestAborted);
    }

    private void LetGo(long bytes)
    {
        if (Interlocked.Add(ref _letGo, bytes) < CollectAfterBytes) return;
        Interlocked.Exchange(ref _letGo, 0);
        GC.Collect(2, GCCollectionMode.Forced, blocking: false);
    }

    private sealed record PromptDetails(int CachedTokens);
    private sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens, PromptDetails PromptTokensDetails);

    /// <summary>One reply in OpenAI's wire format: text_completion or chat.completion, or their stream of chunks.</summary>
    private sealed class Reply(BdhServer server, HttpResponse response, bool chat, bool stream)
    {
        private readonly string _id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        private readonly StringBuilder _text = new();
        private string Kind => chat ? (stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";

        public async Task Begin(CancellationToken cancellationToken)
        {
            if (!stream) return;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            if (chat) await Event(Chunk(new { role = "assistant", content = "" }, finish: null), cancellationToken);
            else await response.Body.FlushAsync(cancellationToken);
        }

        public async Task Text(string text, CancellationToken cancellationToken)
        {
            if (text.Length == 0) return;
            if (stream) await Event(Chunk(chat ? new { content = text } : text, finish: null), cancellationToken);
            else _text.Append(text);
        }

        public Task Activity(TokenActivity activity, CancellationToken cancellationToken) => Event(activity, cancellationToken, "bdh.activity");

        public async Task End(string finish, Usage usage, bool includeUsage, CancellationToken cancellationToken)
        {
            if (!stream)
            {
                object choice = chat
                    ? new { index = 0, message = new { role = "assistant", content = _text.ToString() }, logprobs = (object?)null, finish_reason = finish }
                    : new { index = 0, text = _text.ToString(), logprobs = (object?)null, finish_reason = finish };
                await response.WriteAsJsonAsync(new { id = _id, @object = Kind, created = _created, model = server._model.Name, choices = new[] { choice }, usage }, Json, cancellationToken);
                return;
            }
            await Event(Chunk(chat ? new { } : "", finish), cancellationToken);
            if (includeUsage) await Event(new { id = _id, @object = Kind, created = _created, model = server._model.Name, choices = Array.Empty<object>(), usage }, cancellationToken);
            await response.WriteAsync("data: [DONE]\n\n", cancellationToken);
            await response.Body.FlushAsync(cancellationToken);
        }

        /// <summary>A stream chunk: a chat delta, or a completion's text.</summary>
        private object Chunk(object content, string? finish) => new
        {
            id = _id, @object = Kind, created = _created, model = server._model.Name,
            choices = new[] { chat ? (object)new { index = 0, delta = content, logprobs = (object?)null, finish_reason = finish } : new { index = 0, text = content, logprobs = (object?)null, finish_reason = finish } },
        };

        private async Task Event(object data, CancellationToken cancellationToken, string? name = null)
        {
            string head = name is null ? "data: " : $"event: {name}\ndata: ";
            await response.WriteAsync(head + JsonSerializer.Serialize(data, Json) + "\n\n", cancellationToken);
            await response.Body.FlushAsync(cancellationToken);
        }
    }

    private static async Task<JsonElement> ReadJson(HttpContext http)
    {
        try
        {
            using var document = await JsonDocument.ParseAsync(http.Request.Body, default, http.RequestAborted);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new RequestException(400, $"the request body is not valid JSON: {e.Message}");
        }
    }

    /// <summary>With an API key set, every <c>/v1</c> request needs <c>Authorization: Bearer {key}</c> (compared in constant time).</summary>
    private Task Authorize(HttpContext http, RequestDelegate next)
    {
        if (_options.ApiKey is { } key && http.Request.Path.StartsWithSegments("/v1"))
        {
            string header = http.Request.Headers.Authorization.ToString();
            bool valid = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) // an auth scheme's name is case-insensitive (RFC 9110)
                && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[7..]), Encoding.UTF8.GetBytes(key));
            if (!valid)
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                throw new RequestException(401, "a valid API key is required: Authorization: Bearer KEY", code: "invalid_api_key");
            }
        }
        return next(http);
    }

    /// <summary>Every error as OpenAI's <c>{"error": {...}}</c>: bad requests name their field, anything else is a 500 without a stack trace (logged).</summary>
    private async Task AnswerErrorsAsJson(HttpContext http, RequestDelegate next)
    {
        try
        {
            await next(http);
            // Routing's own answers (no route; a route without this method) carry no body: give them the error JSON too.
            if (!http.Response.HasStarted && http.Response.StatusCode is 404 or 405)
                await WriteError(http, http.Response.StatusCode, new
                {
                    message = http.Response.StatusCode == 404 ? $"no such path: {http.Request.Path}" : $"{http.Request.Method} is not allowed on {http.Request.Path}",
                    type = "invalid_request_error", param = (string?)null, code = http.Response.StatusCode == 404 ? "not_found" : "method_not_allowed",
                });
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away: its generation has stopped, and nobody is left to answer.
        }
        catch (Exception e) when (e is RequestException or BadHttpRequestException)
        {
            var (status, error) = e is RequestException r
                ? (r.Status, new { message = r.Message, type = r.Type, param = r.Param, code = r.Code })
                : (((BadHttpRequestException)e).StatusCode, new { message = e.Message, type = "invalid_request_error", param = (string?)null, code = (string?)null });
            if (status == 429) http.Response.Headers.RetryAfter = "1";
            await WriteError(http, status, error);
        }
        catch (Exception e)
        {
            _app.Logger.LogError(e, "{Method} {Path} failed", http.Request.Method, http.Request.Path);
            await WriteError(http, 500, new { message = "internal server error", type = "server_error", param = (string?)null, code = (string?)null });
        }
    }

    private static async Task WriteError(HttpContext http, int status, object error)
    {
        if (http.Response.HasStarted) return; // mid-stream: the connection ends without [DONE]
        http.Response.StatusCode = status;
        await http.Response.WriteAsJsonAsync(new { error }, Json);
    }

    /// <summary>The playground's files, embedded in this assembly.</summary>
    private static async Task Playground(HttpContext http, string file)
    {
        await using var content = typeof(BdhServer).Assembly.GetManifestResourceStream("Playground/" + file);
        if (content is null)
        {
            http.Response.StatusCode = 404;
            return;
        }
        http.Response.ContentType = Path.GetExtension(file) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            _ => "application/octet-stream",
        };
        await content.CopyToAsync(http.Response.Body, http.RequestAborted);
    }
}
