using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

// bench/serve-load.sh runs this against a bdh serve it starts; see bench/README.md, "bdh serve under load".
//   streams URL CONCURRENCY SECONDS MAX_TOKENS  concurrent streaming completions for SECONDS (then the open ones finish)
//   followup URL HISTORY_BYTES REPEATS          time to first token of a chat's follow-up turn after HISTORY_BYTES of conversation
if (args is ["streams", var url, var concurrency, var seconds, var maxTokens])
    return await Streams(new Uri(url), int.Parse(concurrency), double.Parse(seconds), int.Parse(maxTokens));
if (args is ["followup", var followUrl, var historyBytes, var repeats])
    return await FollowUp(new Uri(followUrl), int.Parse(historyBytes), int.Parse(repeats));
Console.Error.WriteLine("usage: Bdh.ServeLoad streams URL CONCURRENCY SECONDS MAX_TOKENS | followup URL HISTORY_BYTES REPEATS");
return 2;

static HttpClient Client(Uri url)
{
    var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 }) { BaseAddress = url, Timeout = TimeSpan.FromMinutes(10) };
    if (Environment.GetEnvironmentVariable("BDH_API_KEY") is { Length: > 0 } key) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    return http;
}

// Streams one request; returns its time to first token, its time per output token after the first (the decode time over
// the tokens after the first: the gaps between single tokens measure this 2-core machine's scheduling of the client as
// much as the server), and its token count (from usage).
static async Task<(double Ttft, double Tpot, int Tokens)> Stream(HttpClient http, string path, object body)
{
    var watch = Stopwatch.StartNew();
    using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json") };
    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    if (!response.IsSuccessStatusCode) throw new HttpRequestException($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
    double ttft = double.NaN, last = 0;
    int tokens = -1;
    bool done = false;
    while (await reader.ReadLineAsync() is { } line)
    {
        if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
        if (line == "data: [DONE]") { done = true; break; }
        var chunk = JsonDocument.Parse(line[6..]).RootElement;
        if (chunk.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object) tokens = usage.GetProperty("completion_tokens").GetInt32();
        bool text = chunk.GetProperty("choices").EnumerateArray().Any(c =>
            (c.TryGetProperty("text", out var t) && t.GetString()!.Length > 0) || (c.TryGetProperty("delta", out var d) && d.TryGetProperty("content", out var x) && x.GetString()!.Length > 0));
        if (!text) continue;
        last = watch.Elapsed.TotalMilliseconds;
        if (double.IsNaN(ttft)) ttft = last;
    }
    if (!done || tokens < 0) throw new HttpRequestException("the stream ended without usage and [DONE]");
    return (ttft, tokens > 1 ? (last - ttft) / (tokens - 1) : double.NaN, tokens);
}

static double Percentile(List<double> values, double p)
{
    if (values.Count == 0) return double.NaN;
    values.Sort();
    return values[Math.Min(values.Count - 1, (int)Math.Ceiling(p * values.Count) - 1)];
}

static async Task<int> Streams(Uri url, int concurrency, double seconds, int maxTokens)
{
    using var http = Client(url);
    var ttfts = new List<double>();
    var tpots = new List<double>();
    long tokens = 0, requests = 0, errors = 0;
    var watch = Stopwatch.StartNew();
    async Task Worker(int worker)
    {
        for (int i = 0; watch.Elapsed.TotalSeconds < seconds; i++)
        {
            var body = new { prompt = "ROMEO:\n", max_tokens = maxTokens, temperature = 0.8, seed = worker * 100_000 + i, stream = true, stream_options = new { include_usage = true } };
            try
            {
                var (ttft, tpot, count) = await Stream(http, "/v1/completions", body);
                lock (ttfts)
                {
                    ttfts.Add(ttft);
                    tpots.Add(tpot);
                    tokens += count;
                    requests++;
                }
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref errors);
                Console.Error.WriteLine($"error: {e.Message}");
            }
        }
    }
    await Task.WhenAll(Enumerable.Range(0, concurrency).Select(Worker));
    double wall = watch.Elapsed.TotalSeconds;
    Console.WriteLine($"concurrency {concurrency}: {requests} requests, {tokens} tokens in {wall:0.0} s = {tokens / wall:0} tokens/s aggregate; " +
        $"time to first token p50 {Percentile(ttfts, 0.5):0.0} ms, p99 {Percentile(ttfts, 0.99):0.0} ms; " +
        $"per-token latency (time per output token) p50 {Percentile(tpots, 0.5):0.00} ms, p99 {Percentile(tpots, 0.99):0.00} ms; errors {errors}");
    return errors == 0 ? 0 : 1;
}

// A chat of HISTORY_BYTES from tiny Shakespeare's style, answered once, then a follow-up turn sent as the whole
// conversation: the time to its first token, which reads only the follow-up when the server kept the first turn.
static async Task<int> FollowUp(Uri url, int historyBytes, int repeats)
{
    using var http = Client(url);
    var ttfts = new List<double>();
    for (int r = 0; r < repeats; r++)
    {
        var line = $"Conversation {r}: what light through yonder window breaks? It is the east, and Juliet is the sun. ";
        string history = string.Concat(Enumerable.Repeat(line, historyBytes / line.Length + 1))[..historyBytes];
        var messages = new List<object> { new { role = "user", content = history } };
        object Request(bool stream) => new { messages = messages.ToArray(), max_tokens = 32, temperature = 0.8, seed = r, stream, stream_options = stream ? new { include_usage = true } : null };
        using (var response = await http.PostAsync("/v1/chat/completions", new StringContent(JsonSerializer.Serialize(Request(stream: false)), Encoding.UTF8, "application/json")))
        {
            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            messages.Add(new { role = "assistant", content = json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() });
        }
        messages.Add(new { role = "user", content = "Speak again, bright angel." });
        var (ttft, _, _) = await Stream(http, "/v1/chat/completions", Request(stream: true));
        ttfts.Add(ttft);
    }
    Console.WriteLine($"follow-up turn after {historyBytes} bytes: time to first token median {Percentile(ttfts, 0.5):0.0} ms (min {ttfts.Min():0.0}, max {ttfts.Max():0.0}) over {repeats}");
    return 0;
}
