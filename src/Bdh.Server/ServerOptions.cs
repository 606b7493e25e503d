namespace Bdh.Server;

/// <summary>Where <c>bdh serve</c> listens and the bounds it keeps. The defaults are safe: loopback only, every input bounded.</summary>
public sealed record ServerOptions
{
    /// <summary>The address to listen on: an IP address or <c>localhost</c>. Anything but loopback exposes the model to the network.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>The port; 0 picks a free one (<see cref="BdhServer.Address"/> tells which).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>When set, every <c>/v1</c> request needs <c>Authorization: Bearer {ApiKey}</c>.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Requests generating at once; more wait in the queue.</summary>
    public int MaxConcurrentRequests { get; init; } = 64;
    /// <summary>Requests waiting for a slot; beyond them a request gets 429.</summary>
    public int MaxQueuedRequests { get; init; } = 64;
    /// <summary>Largest request body; a larger one gets 413.</summary>
    public long MaxRequestBytes { get; init; } = 1 << 20;
    /// <summary>Longest prompt in tokens (bytes, after the chat format).</summary>
    public int MaxPromptTokens { get; init; } = 32768;
    /// <summary>Largest <c>max_tokens</c> a request may ask for.</summary>
    public int MaxCompletionTokens { get; init; } = 4096;
    /// <summary><c>max_tokens</c> when a request gives none.</summary>
    public int DefaultCompletionTokens { get; init; } = 256;
    /// <summary>Memory for kept conversations (each is the model's <c>StateBytes</c>); the least recently used go first. 0 keeps none.</summary>
    public long CacheBytes { get; init; } = 256L << 20;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of its range.</summary>
    public ServerOptions Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Port, nameof(Port));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Port, 65535, nameof(Port));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConcurrentRequests, 1, nameof(MaxConcurrentRequests));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxQueuedRequests, nameof(MaxQueuedRequests));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestBytes, 1024, nameof(MaxRequestBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxPromptTokens, 1, nameof(MaxPromptTokens));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCompletionTokens, 1, nameof(MaxCompletionTokens));
        ArgumentOutOfRangeException.ThrowIfLessThan(DefaultCompletionTokens, 1, nameof(DefaultCompletionTokens));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(DefaultCompletionTokens, MaxCompletionTokens, nameof(DefaultCompletionTokens));
        ArgumentOutOfRangeException.ThrowIfNegative(CacheBytes, nameof(CacheBytes));
        if (ApiKey is { Length: 0 }) throw new ArgumentException("the API key must not be empty", nameof(ApiKey));
        return this;
    }
}
