using System.Text.Json;
using Bdh.Extensions.AI;
using Bdh.Model;
using Bdh.Model.Text;
using Microsoft.Extensions.AI;

namespace Bdh.Server;

/// <summary>A request the server turns away: its HTTP status and an OpenAI-style error naming the parameter.</summary>
internal sealed class RequestException(int status, string message, string? param = null, string type = "invalid_request_error", string? code = null)
    : Exception(message)
{
    public int Status => status;
    public string? Param => param;
    public string Type => type;
    public string? Code => code;
}

/// <summary>
/// A completion or chat completion request, read from its JSON and checked field by field: a known field of the wrong
/// type, out of its range or too large is a 400 naming it; unknown fields are ignored, as OpenAI's clients send many
/// (penalties, logprobs) that a sampler without them can leave out. <c>temperature: 0</c> is greedy decoding; without a
/// <c>seed</c> each request draws its own, as OpenAI's do (a client retrying for another answer gets one).
/// Extensions: <c>top_k</c>, and <c>bdh_activity: true</c> to stream what the model does with each token.
/// </summary>
internal sealed record OpenAiRequest(int[] Prompt, GenerationOptions Options, bool Stream, bool IncludeUsage, bool Activity)
{
    private const int MaxStopSequences = 4;

    public static OpenAiRequest Parse(JsonElement root, bool chat, ServerOptions limits)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new RequestException(400, "the request body must be a JSON object");
        Optional(root, "model", JsonValueKind.String);
        string prompt = chat ? ChatPrompt(Required(root, "messages", JsonValueKind.Array)) : CompletionPrompt(root);
        int[] tokens = ByteTokens.Encode(prompt);
        if (tokens.Length == 0) throw new RequestException(400, "the prompt must not be empty", chat ? "messages" : "prompt");
        if (tokens.Length > limits.MaxPromptTokens)
            throw new RequestException(400, $"the prompt is {tokens.Length} tokens (bytes); this server takes at most {limits.MaxPromptTokens}", chat ? "messages" : "prompt");

        // Chat clients send max_completion_tokens (the newer name) or max_tokens; some send the one they leave out as null.
        string tokensName = chat && Optional(root, "max_completion_tokens", JsonValueKind.Number) is not null ? "max_completion_tokens" : "max_tokens";
        int maxTokens = Integer(root, tokensName, chat ? 1 : 0, limits.MaxCompletionTokens) is long m ? (int)m : limits.DefaultCompletionTokens;
        double? temperature = Number(root, "temperature", 0, 2, minExclusive: false);
        double? topP = Number(root, "top_p", 0, 1, minExclusive: true);
        long? topK = Integer(root, "top_k", 1, ByteTokens.VocabSize);
        long? seed = Integer(root, "seed", long.MinValue, long.MaxValue);
        Integer(root, "n", 1, 1); // one completion per request
        bool stream = Optional(root, "stream", JsonValueKind.True, JsonValueKind.False)?.GetBoolean() ?? false;
        bool includeUsage = Optional(root, "stream_options", JsonValueKind.Object) is { } streamOptions
            && (Optional(streamOptions, "include_usage", JsonValueKind.True, JsonValueKind.False)?.GetBoolean() ?? false);
        bool activity = Optional(root, "bdh_activity", JsonValueKind.True, JsonValueKind.False)?.GetBoolean() ?? false;
        Optional(root, "user", JsonValueKind.String);

        var defaults = new GenerationOptions();
        var options = defaults with
        {
            MaxTokens = maxTokens,
            // OpenAI's servers read temperature 0 as greedy decoding, which the sampler asks for as top-k 1.
            Temperature = temperature is > 0 ? temperature.Value : defaults.Temperature,
            TopK = temperature == 0 ? 1 : (int?)topK,
            TopP = topP,
            Seed = seed is long s ? unchecked((ulong)s) : unchecked((ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue)),
            StopSequences = chat ? [BdhChatClient.TurnEnd, .. StopSequences(root)] : StopSequences(root),
        };
        return new OpenAiRequest(tokens, options, stream, includeUsage, activity);
    }

    private static string CompletionPrompt(JsonElement root)
    {
        var prompt = Required(root, "prompt", JsonValueKind.String, JsonValueKind.Array);
        if (prompt.ValueKind == JsonValueKind.String) return Text(prompt, "prompt");
        if (prompt.GetArrayLength() != 1 || prompt[0].ValueKind != JsonValueKind.String)
            throw new RequestException(400, "prompt must be a string or an array of one string (one completion per request)", "prompt");
        return Text(prompt[0], "prompt");
    }

    /// <summary>The messages in <see cref="BdhChatClient"/>'s documented format, ending with the reply's <c>ASSISTANT:\n</c>.</summary>
    private static string ChatPrompt(JsonElement messages)
    {
        if (messages.GetArrayLength() == 0) throw new RequestException(400, "messages must not be empty", "messages");
        var chat = new List<ChatMessage>();
        foreach (var message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object) throw new RequestException(400, "each message must be an object", "messages");
            string role = Text(Required(message, "role", JsonValueKind.String), "messages");
            if (string.IsNullOrWhiteSpace(role)) throw new RequestException(400, "each message's role must not be empty", "messages");
            var content = Optional(message, "content", JsonValueKind.String, JsonValueKind.Array);
            string text = content is null ? "" : content.Value.ValueKind == JsonValueKind.String ? Text(content.Value, "messages") : TextParts(content.Value);
            string? name = Optional(message, "name", JsonValueKind.String) is { } given ? Text(given, "messages") : null;
            chat.Add(new ChatMessage(new ChatRole(role), text) { AuthorName = name });
        }
        return BdhChatClient.FormatPrompt(chat);
    }

    /// <summary>A message's content given as parts: the text parts joined; a model of bytes reads no images or audio.</summary>
    private static string TextParts(JsonElement parts) => string.Concat(parts.EnumerateArray().Select(part =>
        part.ValueKind == JsonValueKind.Object && Required(part, "type", JsonValueKind.String).ValueEquals("text")
            ? Text(Required(part, "text", JsonValueKind.String), "messages")
            : throw new RequestException(400, "message content parts must be {\"type\": \"text\", \"text\": ...}: this model reads text only", "messages")));

    private static string[] StopSequences(JsonElement root)
    {
        var stop = Optional(root, "stop", JsonValueKind.String, JsonValueKind.Array);
        if (stop is null) return [];
        if (stop.Value.ValueKind == JsonValueKind.String) return NonEmpty([Text(stop.Value, "stop")]);
        if (stop.Value.GetArrayLength() > MaxStopSequences) throw new RequestException(400, $"stop takes at most {MaxStopSequences} sequences", "stop");
        return NonEmpty(stop.Value.EnumerateArray().Select(s => s.ValueKind == JsonValueKind.String ? Text(s, "stop") : throw new RequestException(400, "stop must be a string or an array of strings", "stop")).ToArray());

        static string[] NonEmpty(string[] sequences) =>
            sequences.Any(s => s.Length == 0) ? throw new RequestException(400, "stop sequences must not be empty", "stop") : sequences;
    }

    /// <summary>
    /// A JSON string's text. JSON text is UTF-8 with paired surrogates; a body whose strings are not (another charset, a
    /// lone \ud800 escape) is the client's mistake, a 400 naming the field, not the 500 the decoder's exception would be.
    /// </summary>
    private static string Text(JsonElement value, string param)
    {
        try { return value.GetString()!; }
        catch (InvalidOperationException) { throw new RequestException(400, $"{param} is not valid text: JSON strings are UTF-8 with paired surrogates", param); }
    }

    private static JsonElement Required(JsonElement parent, string name, params JsonValueKind[] kinds) =>
        Optional(parent, name, kinds) ?? throw new RequestException(400, $"{name} is required", name);

    /// <summary>The field, null when absent or null; one of another JSON type is a 400.</summary>
    private static JsonElement? Optional(JsonElement parent, string name, params JsonValueKind[] kinds)
    {
        if (!parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (!kinds.Contains(value.ValueKind))
            throw new RequestException(400, $"{name} must be {string.Join(" or ", kinds.Select(Describe).Distinct())}, not {Describe(value.ValueKind)}", name);
        return value;
    }

    private static long? Integer(JsonElement parent, string name, long min, long max)
    {
        if (Optional(parent, name, JsonValueKind.Number) is not { } value) return null;
        if (!value.TryGetInt64(out long integer)) throw new RequestException(400, $"{name} must be an integer", name);
        if (integer < min || integer > max) throw new RequestException(400, $"{name} must be in [{min}, {max}], not {integer}", name);
        return integer;
    }

    private static double? Number(JsonElement parent, string name, double min, double max, bool minExclusive)
    {
        if (Optional(parent, name, JsonValueKind.Number) is not { } value) return null;
        double number = value.GetDouble();
        if (number < min || number > max || (minExclusive && number == min))
            throw new RequestException(400, $"{name} must be in {(minExclusive ? "(" : "[")}{min}, {max}], not {number}", name);
        return number;
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Number => "a number",
        JsonValueKind.String => "a string",
        _ => "null",
    };
}
