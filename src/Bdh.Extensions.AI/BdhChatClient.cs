using System.Runtime.CompilerServices;
using System.Text;
using Bdh.Model;
using Microsoft.Extensions.AI;

namespace Bdh.Extensions.AI;

/// <summary>
/// A <see cref="BdhLanguageModel"/> as Microsoft.Extensions.AI's <see cref="IChatClient"/>.
/// </summary>
/// <remarks>
/// <para><b>Prompt format.</b> A byte-level model reads a conversation as one text, here laid out as a play (as tiny
/// Shakespeare is): each message is <c>"{SPEAKER}:\n{text}\n\n"</c>, the speaker being the message's
/// <see cref="ChatMessage.AuthorName"/> or else its role, in capitals (<c>SYSTEM</c>, <c>USER</c>, <c>ASSISTANT</c>).
/// <see cref="ChatOptions.Instructions"/> open a new conversation as a <c>SYSTEM</c> message. The reply is asked for
/// with <c>"ASSISTANT:\n"</c> and ends at the end of its turn, the first <c>"\n\n"</c> (left out of the reply), at a
/// stop sequence, or after <see cref="ChatOptions.MaxOutputTokens"/> bytes (default 256). <see cref="FormatPrompt"/>
/// writes exactly what the model reads.</para>
/// <para><b>Conversations.</b> Every response carries a <see cref="ChatResponse.ConversationId"/>. Passed back in
/// <see cref="ChatOptions.ConversationId"/> with only the new messages, it continues that conversation's
/// <see cref="BdhSession"/>: the model reads only the new tokens, as its memory of the rest is the session's fixed-size
/// synaptic state. The client holds the most recently used <c>maxConversations</c> sessions. Without a
/// ConversationId, the messages are the whole conversation and a new session reads them.</para>
/// <para>Options: temperature, top-k, top-p, seed, max output tokens and stop sequences; tools and other content than
/// text are ignored. Requests on different conversations run concurrently; a conversation takes one request at a time,
/// and a second while its first still runs is refused (<see cref="InvalidOperationException"/>).</para>
/// </remarks>
public sealed class BdhChatClient : IChatClient
{
    /// <summary>What ends a message, and so a reply.</summary>
    public const string TurnEnd = "\n\n";

    private readonly BdhLanguageModel _model;
    private readonly int _maxConversations;
    private readonly ChatClientMetadata _metadata;
    private readonly Dictionary<string, Conversation> _conversations = [];
    private long _clock;

    /// <param name="Session">the conversation so far.</param>
    private sealed record Conversation(BdhSession Session)
    {
        /// <summary>Whether the last reply ended without <see cref="TurnEnd"/> (cut by a stop sequence, the token limit or a cancellation), so the next prompt closes its turn first.</summary>
        public bool TurnOpen { get; set; }
        public long LastUse { get; set; }
    }

    public BdhChatClient(BdhLanguageModel model, int maxConversations = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConversations, 1);
        _model = model;
        _maxConversations = maxConversations;
        _metadata = new ChatClientMetadata("bdhnative", defaultModelId: model.Name);
    }

    /// <summary>The text the model reads for <paramref name="messages"/>, up to and including the reply's <c>"ASSISTANT:\n"</c>.</summary>
    public static string FormatPrompt(IEnumerable<ChatMessage> messages, string? instructions = null)
    {
        var prompt = new StringBuilder();
        if (instructions is not null) prompt.Append(FormatMessage(new ChatMessage(ChatRole.System, instructions)));
        foreach (var message in messages) prompt.Append(FormatMessage(message));
        return prompt.Append(Speaker(ChatRole.Assistant.Value)).ToString();
    }

    private static string FormatMessage(ChatMessage message) => Speaker(message.AuthorName ?? message.Role.Value) + message.Text + TurnEnd;

    private static string Speaker(string name) => name.ToUpperInvariant() + ":\n";

    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <exception cref="ArgumentException">an unknown <see cref="ChatOptions.ConversationId"/>, or an option out of its range.</exception>
    /// <exception cref="InvalidOperationException">the conversation is still answering an earlier request.</exception>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var defaults = new GenerationOptions();
        var generation = (defaults with
        {
            MaxTokens = options?.MaxOutputTokens ?? defaults.MaxTokens,
            Temperature = options?.Temperature ?? defaults.Temperature,
            TopK = options?.TopK,
            TopP = options?.TopP,
            Seed = options?.Seed is long seed ? unchecked((ulong)seed) : defaults.Seed,
            StopSequences = [TurnEnd, .. options?.StopSequences ?? []],
        }).Validate();
        var (id, conversation, isNew) = Find(options?.ConversationId);
        string prompt = (conversation.TurnOpen ? TurnEnd : "") + FormatPrompt(messages, isNew ? options?.Instructions : null);
        return Stream(id, conversation, prompt, generation, cancellationToken);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Stream(string id, Conversation conversation, string prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string responseId = Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ConversationId = id, ResponseId = responseId, MessageId = responseId, ModelId = _model.Name, CreatedAt = created,
        };
        conversation.TurnOpen = true;
        int count = 0;
        var tail = new StringBuilder(); // the last drawn bytes, to see whether the reply ended its turn
        await foreach (var token in conversation.Session.GenerateAsync(prompt, options, cancellationToken).ConfigureAwait(false))
        {
            count++;
            tail.Append((char)token.Id);
            if (tail.Length > TurnEnd.Length) tail.Remove(0, 1);
            if (token.Text.Length > 0) yield return Update([new TextContent(token.Text)]);
            if (token.Finish is not FinishReason finish) continue;
            conversation.TurnOpen = tail.ToString() != TurnEnd;
            int input = Encoding.UTF8.GetByteCount(prompt);
            var usage = new UsageDetails { InputTokenCount = input, OutputTokenCount = count, TotalTokenCount = input + count };
            var last = Update([new UsageContent(usage)]);
            last.FinishReason = finish == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length;
            yield return last;
        }
    }

    /// <summary>The conversation an id names, or a new one (dropping the least recently used beyond the limit).</summary>
    private (string Id, Conversation Conversation, bool IsNew) Find(string? id)
    {
        lock (_conversations)
        {
            if (id is not null)
            {
                if (!_conversations.TryGetValue(id, out var known))
                    throw new ArgumentException($"conversation '{id}' is not held by this client (never started here, or dropped as least recently used): send the whole conversation without a ConversationId", "options");
                known.LastUse = ++_clock;
                return (id, known, false);
            }
            if (_conversations.Count == _maxConversations) _conversations.Remove(_conversations.MinBy(c => c.Value.LastUse).Key);
            var started = new Conversation(_model.StartSession()) { LastUse = ++_clock };
            id = Guid.NewGuid().ToString("N");
            _conversations.Add(id, started);
            return (id, started, true);
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? _metadata
        : serviceType == typeof(BdhLanguageModel) ? _model
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    /// <summary>Drops every conversation held.</summary>
    public void Dispose()
    {
        lock (_conversations) _conversations.Clear();
    }
}
