using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Bdh.Extensions.AI;
using Bdh.Model;
using Microsoft.Extensions.AI;

namespace Bdh.Server.Tests;

/// <summary>The OpenAI-compatible API over real HTTP on loopback, compared with the library's sessions.</summary>
public class ServerTests
{
    private static BdhLanguageModel Model => ServerClient.Trained.Value;

    private static async Task<string> SessionReply(string prompt, GenerationOptions options)
    {
        var text = new System.Text.StringBuilder();
        await foreach (var token in Model.StartSession().GenerateAsync(prompt, options)) text.Append(token.Text);
        return text.ToString();
    }

    [Fact]
    public async Task ACompletionIsTheSessionsReplyAndTemperatureZeroIsGreedy()
    {
        await using var client = await ServerClient.Start();
        var (status, json) = await client.Post("/v1/completions", new { model = Model.Name, prompt = "ROMEO:", max_tokens = 50, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = json.GetProperty("choices")[0];
        Assert.Equal(await SessionReply("ROMEO:", new GenerationOptions { MaxTokens = 50, TopK = 1 }), choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        Assert.Equal(Model.Name, json.GetProperty("model").GetString());
        Assert.Equal(6, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(50, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var (_, sampled) = await client.Post("/v1/completions", new { prompt = "ROMEO:", max_tokens = 50, temperature = 0.8, top_p = 0.9, seed = 4, stop = new[] { "\n\n" } });
        string expected = await SessionReply("ROMEO:", new GenerationOptions { MaxTokens = 50, Temperature = 0.8, TopP = 0.9, Seed = 4, StopSequences = ["\n\n"] });
        Assert.Equal(expected, sampled.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AStreamedReplyIsTheWholeReplyInChunksEndingWithDone(bool chat)
    {
        await using var client = await ServerClient.Start();
        string path = chat ? "/v1/chat/completions" : "/v1/completions";
        object body = chat
            ? new { messages = new[] { new { role = "user", content = "Who art thou?" } }, max_tokens = 60, temperature = 0.7, seed = 3, stream = true, stream_options = new { include_usage = true } }
            : new { prompt = "JULIET:", max_tokens = 60, temperature = 0.7, seed = 3, stream = true, stream_options = new { include_usage = true } };
        var events = await client.Stream(path, body);
        var (_, whole) = await client.Post(path, chat
            ? new { messages = new[] { new { role = "user", content = "Who art thou?" } }, max_tokens = 60, temperature = 0.7, seed = 3 }
            : new { prompt = "JULIET:", max_tokens = 60, temperature = 0.7, seed = 3 });
        var choice = whole.GetProperty("choices")[0];
        string text = chat ? choice.GetProperty("message").GetProperty("content").GetString()! : choice.GetProperty("text").GetString()!;

        Assert.Equal("[DONE]", events[^1].Data);
        Assert.Equal(text, ServerClient.StreamedText(events, chat));
        Assert.True(events.Count > 10, "the reply comes in many chunks");
        var chunks = events[..^1].Select(e => e.Json).ToList();
        Assert.All(chunks, c => Assert.Equal(chat ? "chat.completion.chunk" : "text_completion", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        var finishes = chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray()).Select(c => c.GetProperty("finish_reason")).ToList();
        Assert.Equal(choice.GetProperty("finish_reason").GetString(), finishes[^1].GetString());
        Assert.All(finishes[..^1], f => Assert.Equal(JsonValueKind.Null, f.ValueKind));
        Assert.Equal(whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        if (chat) Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
    }

    [Fact]
    public async Task AChatCompletionIsTheChatClientsReplyToTheSameMessages()
    {
        await using var client = await ServerClient.Start();
        var (status, json) = await client.Post("/v1/chat/completions", new
        {
            model = Model.Name, temperature = 0, max_tokens = 120,
            messages = new object[]
            {
                new { role = "system", content = "Speak in verse." },
                new { role = "user", content = new object[] { new { type = "text", text = "Who art " }, new { type = "text", text = "thou?" } } },
                new { role = "assistant", name = "Romeo", content = "A friend." },
                new { role = "user", content = "Come hither." },
            },
        });
        Assert.Equal(HttpStatusCode.OK, status);
        ChatMessage[] messages = [new(ChatRole.System, "Speak in verse."), new(ChatRole.User, "Who art thou?"), new(ChatRole.Assistant, "A friend.") { AuthorName = "Romeo" }, new(ChatRole.User, "Come hither.")];
        var expected = await new BdhChatClient(Model).GetResponseAsync(messages, new ChatOptions { TopK = 1, MaxOutputTokens = 120 });
        var choice = json.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("message").GetProperty("content").GetString());
        Assert.NotEmpty(expected.Text);
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal(expected.FinishReason == ChatFinishReason.Stop ? "stop" : "length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(BdhChatClient.FormatPrompt(messages).Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ModelsAndHealthAnswer()
    {
        await using var client = await ServerClient.Start();
        var models = JsonDocument.Parse(await client.Http.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal(Model.Name, Assert.Single(models.GetProperty("data").EnumerateArray()).GetProperty("id").GetString());
        Assert.Equal("ok", JsonDocument.Parse(await client.Http.GetStringAsync("/health")).RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task AnApiKeyIsNeededOnEveryV1RequestButNotForHealth()
    {
        await using var client = await ServerClient.Start(new ServerOptions { ApiKey = "s3cret" });
        using var anonymous = new HttpClient { BaseAddress = client.Server.Address };
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health")).StatusCode);
        foreach (var (key, path) in new[] { ((string?)null, "/v1/models"), (null, "/v1/completions"), ("wrong", "/v1/chat/completions"), ("s3cret0", "/v1/models") })
        {
            using var request = new HttpRequestMessage(path == "/v1/models" ? HttpMethod.Get : HttpMethod.Post, path) { Content = ServerClient.Body(new { prompt = "x", max_tokens = 1 }) };
            if (key is not null) request.Headers.Authorization = new("Bearer", key);
            using var response = await anonymous.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
        }
        var (status, _) = await client.Post("/v1/completions", new { prompt = "x", max_tokens = 1 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(HttpStatusCode.OK, (await client.Http.GetAsync("/v1/models")).StatusCode);
    }

    public static TheoryData<string, string, string?> BadRequests => new()
    {
        { "/v1/completions", "{\"prompt\": \"x\"", null },                          // not JSON
        { "/v1/completions", "[1, 2]", null },                                       // not an object
        { "/v1/completions", "{}", "prompt" },
        { "/v1/completions", "{\"prompt\": 5}", "prompt" },
        { "/v1/completions", "{\"prompt\": \"\"}", "prompt" },
        { "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", "prompt" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -1}", "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 1e12}", "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 99999999999999999999999}", "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2.5}", "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"10\"}", "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"temperature\": -0.1}", "temperature" },
        { "/v1/completions", "{\"prompt\": \"x\", \"temperature\": 1e300}", "temperature" },
        { "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature" },
        { "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", "top_p" },
        { "/v1/completions", "{\"prompt\": \"x\", \"top_k\": 0}", "top_k" },
        { "/v1/completions", "{\"prompt\": \"x\", \"seed\": \"a\"}", "seed" },
        { "/v1/completions", "{\"prompt\": \"x\", \"n\": 2}", "n" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stream\": \"yes\"}", "stream" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stream_options\": {\"include_usage\": 1}}", "include_usage" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"\"]}", "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [3]}", "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"model\": 7}", "model" },
        { "/v1/completions", "{\"prompt\": \"" + new string('a', 5000) + "\"}", "prompt" }, // over the prompt limit below
        { "/v1/chat/completions", "{\"messages\": []}", "messages" },
        { "/v1/chat/completions", "{\"messages\": \"hi\"}", "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"content\": \"hi\"}]}", "role" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}", "content" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_completion_tokens\": 0}", "max_completion_tokens" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"\", \"content\": \"hi\"}]}", "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \" \", \"content\": \"hi\"}]}", "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\\ud800\"}]}", "messages" }, // a lone surrogate
        { "/v1/completions", "{\"prompt\": \"hi\\ud83d\"}", "prompt" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": \"\\udc00\"}", "stop" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadInputIsA400WithAnOpenAiErrorNamingTheField(string path, string body, string? param)
    {
        await using var client = await ServerClient.Start(new ServerOptions { MaxPromptTokens = 4096 });
        using var response = await client.Http.PostAsync(path, ServerClient.Body(body));
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.DoesNotContain(" at Bdh.", text); // never a stack trace
    }

    [Fact]
    public async Task RoutesHeadersAndFieldsThatOpenAiClientsRelyOn()
    {
        await using var client = await ServerClient.Start(new ServerOptions { ApiKey = "s3cret" });
        using var http = new HttpClient { BaseAddress = client.Server.Address };
        http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "bearer s3cret"); // the scheme in any case
        var model = JsonDocument.Parse(await http.GetStringAsync($"/v1/models/{Model.Name}")).RootElement;
        Assert.Equal((Model.Name, "model"), (model.GetProperty("id").GetString(), model.GetProperty("object").GetString()));
        foreach (var (method, path, status, code) in new[]
        {
            (HttpMethod.Get, "/v1/models/gpt-4", HttpStatusCode.NotFound, "model_not_found"),
            (HttpMethod.Get, "/v1/nothing", HttpStatusCode.NotFound, "not_found"),
            (HttpMethod.Get, "/v1/chat/completions", HttpStatusCode.MethodNotAllowed, "method_not_allowed"),
        })
        {
            using var response = await http.SendAsync(new HttpRequestMessage(method, path));
            Assert.Equal(status, response.StatusCode);
            Assert.Equal(code, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        }
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/health"))).StatusCode);

        // Latin-1 bytes where JSON's UTF-8 belongs: the client's mistake, named, not a server error.
        var latin1 = new ByteArrayContent([.. "{\"prompt\": \"caf"u8, 0xE9, .. "\"}"u8]);
        latin1.Headers.ContentType = new("application/json");
        using (var response = await http.PostAsync("/v1/completions", latin1))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("prompt", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
        }

        // A field sent as null is a field not sent: max_tokens holds.
        var (_, chat) = await client.Post("/v1/chat/completions",
            new { messages = new[] { new { role = "user", content = "hi" } }, max_completion_tokens = (int?)null, max_tokens = 3, temperature = 0 });
        Assert.Equal(3, chat.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Without a seed each request draws its own, as OpenAI's do: asking again gives another answer.
        var texts = new HashSet<string>();
        for (int i = 0; i < 3; i++)
            texts.Add((await client.Post("/v1/completions", new { prompt = "ROMEO:", max_tokens = 24 })).Json.GetProperty("choices")[0].GetProperty("text").GetString()!);
        Assert.True(texts.Count > 1, "three unseeded replies were the same");
    }

    [Fact]
    public async Task ABodyOverTheLimitIsA413()
    {
        await using var client = await ServerClient.Start(new ServerOptions { MaxRequestBytes = 4096 });
        using var response = await client.Http.PostAsync("/v1/completions", ServerClient.Body(new { prompt = new string('a', 10_000) }));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.NotNull(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task ConcurrentRepliesAreEachWhatTheyAreAlone()
    {
        await using var client = await ServerClient.Start();
        object Body(int seed) => new { prompt = "KING:", max_tokens = 40, temperature = 0.9, seed };
        var together = await Task.WhenAll(Enumerable.Range(1, 6).Select(seed => client.Post("/v1/completions", Body(seed))));
        for (int seed = 1; seed <= 6; seed++)
            Assert.Equal(await SessionReply("KING:", new GenerationOptions { MaxTokens = 40, Temperature = 0.9, Seed = (ulong)seed }),
                together[seed - 1].Json.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    /// <summary>Concurrent streams take turns token by token: every one has begun before any has ended (not one reply after another).</summary>
    [Fact]
    public async Task ConcurrentStreamsRunSideBySide()
    {
        await using var client = await ServerClient.Start();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        async Task<(double First, double Last)> Timed(int seed)
        {
            using var response = await client.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = ServerClient.Body(new { prompt = "ROMEO:", max_tokens = 250, temperature = 0.8, seed, stream = true }),
            }, HttpCompletionOption.ResponseHeadersRead);
            double first = double.NaN;
            await foreach (var e in ServerClient.Events(await response.Content.ReadAsStreamAsync()))
                if (double.IsNaN(first) && e.Data != "[DONE]") first = watch.Elapsed.TotalMilliseconds;
            return (first, watch.Elapsed.TotalMilliseconds);
        }
        var streams = await Task.WhenAll(Enumerable.Range(1, 16).Select(Timed));
        Assert.True(streams.Max(s => s.First) < streams.Min(s => s.Last),
            $"first tokens at {string.Join(", ", streams.Select(s => $"{s.First:0} ms"))}; ends at {string.Join(", ", streams.Select(s => $"{s.Last:0} ms"))}");
    }

    [Fact]
    public async Task RequestsBeyondTheSlotsAndTheQueueGet429()
    {
        await using var client = await ServerClient.Start(new ServerOptions { MaxConcurrentRequests = 1, MaxQueuedRequests = 1 });
        var (running, runningEvents) = await OpenStream(client, new { prompt = "ROMEO:", max_tokens = 4096, stream = true });
        var queued = client.Post("/v1/completions", new { prompt = "JULIET:", max_tokens = 5 });
        await Task.Delay(200);
        Assert.False(queued.IsCompleted, "the second request waits in the queue");
        var (status, json) = await client.Post("/v1/completions", new { prompt = "NURSE:", max_tokens = 5 });
        Assert.Equal((HttpStatusCode)429, status);
        Assert.Equal("rate_limit_error", json.GetProperty("error").GetProperty("type").GetString());
        await runningEvents.DisposeAsync(); // the client goes away: its slot frees, and the queued request runs
        running.Dispose();
        Assert.Equal(HttpStatusCode.OK, (await queued.WaitAsync(TimeSpan.FromSeconds(10))).Status);
    }

    [Fact]
    public async Task AClientThatDisconnectsCancelsItsGenerationAtOnce()
    {
        await using var client = await ServerClient.Start(new ServerOptions { MaxConcurrentRequests = 1, MaxQueuedRequests = 0 });
        var (connection, events) = await OpenStream(client, new { prompt = "ROMEO:", max_tokens = 4096, stream = true });
        await events.DisposeAsync();
        connection.Dispose();
        // 4096 tokens take seconds; the one slot is free again within a few tokens' time only if the generation stopped.
        var watch = Stopwatch.StartNew();
        HttpStatusCode status;
        do status = (await client.Post("/v1/completions", new { prompt = "x", max_tokens = 1 })).Status;
        while (status == (HttpStatusCode)429 && watch.ElapsedMilliseconds < 2000);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True(watch.ElapsedMilliseconds < 1000, $"the slot came free after {watch.ElapsedMilliseconds} ms");
    }

    /// <summary>
    /// A streaming request with its first chunk read, on its own connection, which closes as the events are disposed, as a
    /// client that goes away does (HttpClient would by default read on, up to 1 MB or 2 s, to reuse the connection).
    /// </summary>
    private static async Task<(HttpClient, IAsyncEnumerator<ServerEvent>)> OpenStream(ServerClient client, object body)
    {
        var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = client.Server.Address };
        var response = await http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = ServerClient.Body(body) }, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = ServerClient.Events(await response.Content.ReadAsStreamAsync()).GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync());
        return (http, events);
    }

    [Fact]
    public async Task StoppingEndsOpenStreamsCleanly()
    {
        var client = await ServerClient.Start();
        var (connection, events) = await OpenStream(client, new { prompt = "ROMEO:", max_tokens = 4096, stream = true });
        var stopped = client.Server.StopAsync();
        var rest = new List<ServerEvent>();
        while (await events.MoveNextAsync()) rest.Add(events.Current);
        await stopped.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("[DONE]", rest[^1].Data);
        Assert.Equal("length", rest[^2].Json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.True(rest.Count < 4000, "the reply ended early");
        connection.Dispose();
        await client.DisposeAsync();
    }

    /// <summary>A follow-up turn sent as the whole conversation (as OpenAI's API has it) reads only its new tokens, and replies as a server without a cache.</summary>
    [Fact]
    public async Task AFollowUpTurnReadsOnlyItsNewTokens()
    {
        await using var cached = await ServerClient.Start();
        await using var uncached = await ServerClient.Start(new ServerOptions { CacheBytes = 0 });
        var history = new List<object> { new { role = "user", content = "What light through yonder window breaks?" } };
        object Request() => new { messages = history.ToArray(), max_tokens = 300, temperature = 0.6, seed = 2 };
        var (_, first) = await cached.Post("/v1/chat/completions", Request());
        string reply = first.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal("stop", first.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        history.Add(new { role = "assistant", content = reply });
        history.Add(new { role = "user", content = "Speak again." });

        var (_, second) = await cached.Post("/v1/chat/completions", Request());
        var (_, fromScratch) = await uncached.Post("/v1/chat/completions", Request());
        string Text(JsonElement json) => json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(Text(fromScratch), Text(second));
        int CachedTokens(JsonElement json) => json.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
        // Cached: the first prompt and every token of its reply, up to the "\n\n" that ended it.
        Assert.Equal(first.GetProperty("usage").GetProperty("total_tokens").GetInt32(), CachedTokens(second));
        Assert.Equal(0, CachedTokens(fromScratch));
        Assert.Equal(0, uncached.Server.KeptConversations);
    }

    [Fact]
    public async Task KeptConversationsStayWithinTheMemoryBudgetDroppingTheLeastRecentlyUsed()
    {
        var c = Model.Config;
        long stateBytes = new Bdh.Model.Inference.SynapticState<float>(c.NLayer, c.NHead, c.N, c.NEmbd).Bytes;
        Assert.InRange(stateBytes, Model.StateBytes, Model.StateBytes * 5 / 4); // ρ and its small buffer of pending tokens
        await using var client = await ServerClient.Start(new ServerOptions { CacheBytes = 2 * stateBytes + stateBytes / 2 });
        // Each reply is kept as its prompt and its 4 tokens; a prompt that extends one resumes it.
        async Task<(string Kept, int Cached)> Complete(string prompt)
        {
            var (_, json) = await client.Post("/v1/completions", new { prompt, max_tokens = 4, temperature = 0 });
            return (prompt + json.GetProperty("choices")[0].GetProperty("text").GetString(),
                json.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        }
        var (romeo, _) = await Complete("ROMEO:");
        var (juliet, _) = await Complete("JULIET:");
        Assert.Equal(2, client.Server.KeptConversations);
        var (romeoAnd, cached) = await Complete(romeo + " and"); // ROMEO's is used again and a third kept: JULIET's, the least recent, goes
        Assert.Equal(romeo.Length, cached);
        Assert.Equal(2, client.Server.KeptConversations);
        Assert.Equal(2 * stateBytes, client.Server.KeptBytes);
        Assert.Equal(0, (await Complete(juliet + " and")).Cached); // kept now, dropping ROMEO's (used before romeoAnd was kept)
        Assert.Equal(romeoAnd.Length, (await Complete(romeoAnd + " or")).Cached);
        Assert.Equal(0, (await Complete(romeo + " or")).Cached);
    }

    [Fact]
    public async Task ActivityStreamsWithTheTokensWhenAsked()
    {
        await using var client = await ServerClient.Start();
        var events = await client.Stream("/v1/completions", new { prompt = "ROMEO:", max_tokens = 20, temperature = 0, stream = true, bdh_activity = true });
        var activity = events.Where(e => e.Name == "bdh.activity").Select(e => e.Json).ToList();
        Assert.Equal(19, activity.Count); // every generated token but the last, which the model has not read yet
        string text = ServerClient.StreamedText(events, chat: false);
        int layers = Model.Config.NLayer;
        for (int i = 0; i < activity.Count; i++)
        {
            Assert.Equal(i, activity[i].GetProperty("index").GetInt32());
            Assert.Equal(text[i], (char)activity[i].GetProperty("token").GetInt32());
            var xs = activity[i].GetProperty("density_xs").EnumerateArray().Select(d => d.GetDouble()).ToArray();
            Assert.Equal(layers, xs.Length);
            Assert.All(xs, d => Assert.InRange(d, 1e-4, 0.9)); // sparse and positive, as the paper finds
            Assert.Equal(layers, activity[i].GetProperty("density_ys").GetArrayLength());
            Assert.NotEmpty(activity[i].GetProperty("top_neurons").EnumerateArray());
            bool heatmap = activity[i].GetProperty("synapses").ValueKind != JsonValueKind.Null;
            Assert.Equal(i % 8 == 0, heatmap);
            if (heatmap)
            {
                var first = activity[i].GetProperty("synapses")[0];
                Assert.Equal(first.GetProperty("rows").GetInt32() * first.GetProperty("columns").GetInt32(), first.GetProperty("cells").GetArrayLength());
                Assert.Contains(first.GetProperty("cells").EnumerateArray(), c => c.GetSingle() > 0);
            }
        }
        // Watching changes nothing: the same greedy text as without activity.
        Assert.Equal(await SessionReply("ROMEO:", new GenerationOptions { MaxTokens = 20, TopK = 1 }), text);
    }
}
