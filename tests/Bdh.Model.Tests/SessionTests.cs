using System.Text.Json;
using Bdh.Model.Text;

namespace Bdh.Model.Tests;

/// <summary>The library API: a model loaded once, sessions that own their synaptic state, streamed replies.</summary>
public class SessionTests
{
    private static readonly string TrainedPath = Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors");
    private static readonly Lazy<BdhLanguageModel> Trained = new(() => BdhLanguageModel.Load(TrainedPath));
    private static readonly JsonElement Expected =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.json"))).RootElement;
    private static readonly GenerationOptions Greedy = new() { TopK = 1 };

    private static async Task<(string Text, List<GeneratedToken> Tokens)> Reply(BdhSession session, string prompt, GenerationOptions options,
        CancellationToken cancellationToken = default)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var token in session.GenerateAsync(prompt, options, cancellationToken)) tokens.Add(token);
        return (string.Concat(tokens.Select(t => t.Text)), tokens);
    }

    [Fact]
    public async Task AGreedyReplyStreamsTheReferenceText()
    {
        string prompt = Expected.GetProperty("greedy_prompt").GetString()!, reference = Expected.GetProperty("greedy_200").GetString()!;
        var (text, tokens) = await Reply(Trained.Value.StartSession(), prompt, Greedy with { MaxTokens = 60 });
        Assert.Equal(reference[prompt.Length..(prompt.Length + 60)], text);
        Assert.Equal(60, tokens.Count);
        Assert.Equal(text, ByteTokens.Decode(tokens.Select(t => t.Id)));
        Assert.Equal(FinishReason.Length, tokens[^1].Finish);
        Assert.All(tokens[..^1], t => Assert.Null(t.Finish));
        Assert.Equal("bdh-trained-cpu-tiny-500", Trained.Value.Name);
        Assert.Equal(4L << 20, Trained.Value.StateBytes); // 4 layers × 4 heads × N 512 × D 128 floats, whatever the length
    }

    [Fact]
    public async Task AConversationContinuedWithOnlyTheNewTokensEqualsOneReadingItAll()
    {
        var session = Trained.Value.StartSession();
        var (first, _) = await Reply(session, "ROMEO:", Greedy with { MaxTokens = 30 });
        var (second, _) = await Reply(session, "\nJULIET:", Greedy with { MaxTokens = 30 });
        Assert.Equal(("ROMEO:" + first + "\nJULIET:").Length + 30, session.Length);
        var (whole, _) = await Reply(Trained.Value.StartSession(), "ROMEO:" + first + "\nJULIET:", Greedy with { MaxTokens = 30 });
        Assert.Equal(whole, second);
    }

    [Fact]
    public async Task TheSeedDecidesASampledReply()
    {
        var options = new GenerationOptions { MaxTokens = 80, TopP = 0.95, Seed = 7 };
        var (a, _) = await Reply(Trained.Value.StartSession(), "ROMEO:", options);
        var (b, _) = await Reply(Trained.Value.StartSession(), "ROMEO:", options);
        var (c, _) = await Reply(Trained.Value.StartSession(), "ROMEO:", options with { Seed = 8 });
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public async Task ForksSnapshotsAndSavedSessionsContinueAsTheOriginal()
    {
        var model = Trained.Value;
        var session = model.StartSession();
        await Reply(session, "ROMEO:", new GenerationOptions { MaxTokens = 20, Seed = 3 });
        var fork = session.Fork();
        var snapshot = session.Snapshot();
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "conversation.safetensors");
        session.Save(path);
        Assert.Equal(26, fork.Length);

        var more = new GenerationOptions { MaxTokens = 40, Seed = 5 };
        var (original, _) = await Reply(session, " and", more);
        Assert.Equal(original, (await Reply(fork, " and", more)).Text);
        Assert.Equal(original, (await Reply(model.LoadSession(path), " and", more)).Text);
        session.Restore(snapshot);
        Assert.Equal(26, session.Length);
        Assert.Equal(original, (await Reply(session, " and", more)).Text);
        Assert.NotEqual(original, (await Reply(model.ResumeSession(snapshot), " but", more)).Text);
    }

    /// <summary>
    /// Sessions share the model's weights and layouts and the kernels' worker threads: six generating at once each
    /// give exactly what they give alone (prompts long enough for the parallel prefill, and short ones).
    /// </summary>
    [Fact]
    public async Task ConcurrentSessionsEachGiveWhatTheyGiveAlone()
    {
        string[] prompts = ["ROMEO:", "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?", "KING", "First Citizen:\nBefore we proceed any further, hear me speak.", "A", "MENENIUS:"];
        Task<(string, List<GeneratedToken>)> Run(int i) =>
            Reply(Trained.Value.StartSession(), prompts[i], new GenerationOptions { MaxTokens = 64, Seed = (ulong)i, Temperature = 0.8, TopK = 40 });
        var alone = new List<string>();
        for (int i = 0; i < prompts.Length; i++) alone.Add((await Run(i)).Item1);
        var together = await Task.WhenAll(Enumerable.Range(0, prompts.Length).Select(i => Task.Run(() => Run(i))));
        Assert.Equal(alone, together.Select(r => r.Item1));
        Assert.Equal(prompts.Length, alone.Distinct().Count());
    }

    [Fact]
    public async Task AStopSequenceEndsTheReplyAndIsLeftOut()
    {
        var (full, _) = await Reply(Trained.Value.StartSession(), "ROMEO:", Greedy with { MaxTokens = 100 });
        string stop = full.Substring(50, 3);
        int at = full.IndexOf(stop, StringComparison.Ordinal);
        var session = Trained.Value.StartSession();
        var (text, tokens) = await Reply(session, "ROMEO:", Greedy with { MaxTokens = 100, StopSequences = ["\u0001never", stop] });
        Assert.Equal(full[..at], text);
        Assert.Equal(at + 3, tokens.Count); // the stop's tokens were drawn (and are in the conversation), not shown
        Assert.Equal(FinishReason.Stop, tokens[^1].Finish);
        Assert.Equal(6 + at + 3, session.Length);
    }

    [Fact]
    public void ReplyTextHoldsBackWhatMayBeAStopAndCompletesCharacters()
    {
        var reply = new ReplyText(["<end>", ""]);
        var pieces = "x<en<end>"u8.ToArray().Select(reply.Add).ToList();
        Assert.Equal(["x", "", "", "", "<en", "", "", "", ""], pieces);
        Assert.True(reply.Stopped);
        Assert.Throws<InvalidOperationException>(() => reply.Add((byte)'y'));

        var unfinished = new ReplyText(["<end>"]);
        Assert.Equal(["", "é", "", ""], "é<e"u8.ToArray().Select(unfinished.Add)); // é is two bytes
        Assert.False(unfinished.Stopped);
        Assert.Equal("<e", unfinished.Finish());
    }

    [Fact]
    public async Task ACanceledReplyKeepsTheTokensDrawnSoFar()
    {
        var session = Trained.Value.StartSession();
        using var cancel = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in session.GenerateAsync("ROMEO:", Greedy, cancel.Token))
                if (++seen == 5) cancel.Cancel();
        });
        Assert.Equal(5, seen);
        Assert.Equal(6 + 5, session.Length);
        var (rest, _) = await Reply(session, "", Greedy with { MaxTokens = 10 });
        string reference = Expected.GetProperty("greedy_200").GetString()!;
        Assert.Equal(reference[11..21], rest);
    }

    /// <summary>
    /// A call canceled while it reads a long prompt (a server's client gone) stops within a turn of steps, not at the
    /// prompt's end, and the session holds what it read: it continues as a session given just that much would.
    /// </summary>
    [Fact]
    public async Task ACallCanceledWhileReadingALongPromptStopsSoonAndKeepsWhatItRead()
    {
        int[] prompt = [.. File.ReadAllBytes(Shared.Corpus)[..4000].Select(b => (int)b)];
        var session = Trained.Value.StartSession();
        using var cancel = new CancellationTokenSource();
        var call = Task.Run(async () => { await foreach (var _ in session.GenerateAsync(prompt, Greedy, cancel.Token)) { } });
        while (session.Length <= Inference.FastStepper<float>.ParallelPrefillTokens && !call.IsCompleted) await Task.Delay(1);
        int atCancel = session.Length;
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        // The turn under way (and one more, should it start between the two lines above), and the next token pending.
        Assert.InRange(session.Length, atCancel, atCancel + 2 * 64 + 1);
        int kept = session.Length;
        Assert.True(kept < prompt.Length, $"read all {prompt.Length} tokens before stopping");
        var (_, rest) = await Reply(session, "", Greedy with { MaxTokens = 10 });
        var fresh = new List<GeneratedToken>();
        await foreach (var token in Trained.Value.StartSession().GenerateAsync(prompt[..kept], Greedy with { MaxTokens = 10 })) fresh.Add(token);
        Assert.Equal(fresh.Select(t => t.Id), rest.Select(t => t.Id));
    }

    [Fact]
    public async Task ReadingAPromptWithoutReplyingLeavesItsLastTokenForTheNextCall()
    {
        var session = Trained.Value.StartSession();
        var (_, none) = await Reply(session, "ROMEO:", Greedy with { MaxTokens = 0 });
        Assert.Empty(none);
        Assert.Equal(6, session.Length);
        var (text, _) = await Reply(session, "", Greedy with { MaxTokens = 20 });
        Assert.Equal(Expected.GetProperty("greedy_200").GetString()![6..26], text);
    }

    [Fact]
    public async Task ASessionRunsOneCallAtATime()
    {
        var session = Trained.Value.StartSession();
        Assert.Throws<InvalidOperationException>(() => session.Snapshot()); // empty: nothing to snapshot
        await using (var reply = session.GenerateAsync("ROMEO:", Greedy).GetAsyncEnumerator())
        {
            Assert.True(await reply.MoveNextAsync());
            await Assert.ThrowsAsync<InvalidOperationException>(() => Reply(session, "more", Greedy));
            Assert.Throws<InvalidOperationException>(() => session.Fork());
        }
        Assert.Equal(7, session.Fork().Length);
    }

    [Fact]
    public async Task BadArgumentsAreRefusedWithTheirNames()
    {
        var session = Trained.Value.StartSession();
        Assert.Equal("Temperature", Assert.Throws<ArgumentOutOfRangeException>(() => session.GenerateAsync("a", new() { Temperature = 0 })).ParamName);
        Assert.Equal("TopK", Assert.Throws<ArgumentOutOfRangeException>(() => session.GenerateAsync("a", new() { TopK = 0 })).ParamName);
        Assert.Equal("TopP", Assert.Throws<ArgumentOutOfRangeException>(() => session.GenerateAsync("a", new() { TopP = 1.5 })).ParamName);
        Assert.Equal("MaxTokens", Assert.Throws<ArgumentOutOfRangeException>(() => session.GenerateAsync("a", new() { MaxTokens = -1 })).ParamName);
        await Assert.ThrowsAsync<ArgumentException>(() => Reply(session, "", Greedy));

        using var dir = new TempDir();
        Assert.Contains("no checkpoint in folder", Assert.Throws<FileNotFoundException>(() => BdhLanguageModel.Load(dir.Path)).Message);
        Assert.Contains("no such file or folder", Assert.Throws<FileNotFoundException>(() => BdhLanguageModel.Load(Path.Combine(dir.Path, "x"))).Message);
        var wordLevel = BdhModel<float>.Create(new BdhConfig { NLayer = 1, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 2, VocabSize = 17 }, 1);
        Assert.Throws<ArgumentException>(() => new BdhLanguageModel(wordLevel));
        var otherShape = BdhModel<float>.Create(new BdhConfig { NLayer = 1, NEmbd = 8, NHead = 2, MlpInternalDimMultiplier = 2 }, 1);
        var snapshot = new BdhLanguageModel(otherShape).StartSession();
        await Reply(snapshot, "a", Greedy with { MaxTokens = 1 });
        Assert.Throws<ArgumentException>(() => Trained.Value.ResumeSession(snapshot.Snapshot()));
    }

    [Fact]
    public async Task ATrainOutputFolderLoadsItsLatestCheckpoint()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(Path.Combine(dir.Path, "checkpoints"));
        File.Copy(TrainedPath, Path.Combine(dir.Path, "checkpoints", "step-000500.safetensors"));
        File.WriteAllBytes(Path.Combine(dir.Path, "checkpoints", "step-000500.optim.safetensors"), []); // a complete pair
        var model = BdhLanguageModel.Load(dir.Path);
        Assert.Equal("step-000500", model.Name);
        var (text, _) = await Reply(model.StartSession(), "ROMEO:", Greedy with { MaxTokens = 10 });
        Assert.Equal(Expected.GetProperty("greedy_200").GetString()![6..16], text);
    }

    /// <summary>Top-p keeps the most likely tokens whose probabilities first reach p, renormalised.</summary>
    [Fact]
    public void TopPDrawsOnlyFromTheNucleusInProportion()
    {
        float[] logits = [MathF.Log(0.15f), MathF.Log(0.5f), MathF.Log(0.05f), MathF.Log(0.3f)];
        var rng = new Rng(11);
        var counts = new int[4];
        for (int i = 0; i < 4000; i++) counts[Sampler.Draw(logits, new SamplingOptions(TopP: 0.7), rng)]++;
        Assert.Equal(0, counts[0] + counts[2]);
        Assert.InRange(counts[1] / 4000.0, 0.625 - 0.03, 0.625 + 0.03); // 0.5 / (0.5 + 0.3)
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(1, Sampler.Draw(logits, new SamplingOptions(TopP: 0.4), rng)));
    }

    [Fact]
    public async Task EndHandsTheStateOverAsItsSnapshotWouldAndEndsTheSession()
    {
        var session = Trained.Value.StartSession();
        Assert.Throws<InvalidOperationException>(() => session.End()); // empty: nothing to hand over, and still usable
        await Reply(session, "ROMEO:", Greedy with { MaxTokens = 20 });
        var copied = session.Snapshot();
        var handedOver = session.End();
        Assert.Equal(copied.Position, handedOver.Position);
        Assert.Equal(copied.PendingToken, handedOver.PendingToken);
        for (int layer = 0; layer < copied.State.Rho.Length; layer++) Assert.Equal(copied.State.Rho[layer], handedOver.State.Rho[layer]);
        var (fromCopy, _) = await Reply(Trained.Value.ResumeSession(copied), "\nJULIET:", Greedy with { MaxTokens = 30 });
        var (fromEnd, _) = await Reply(Trained.Value.ResumeSession(handedOver), "\nJULIET:", Greedy with { MaxTokens = 30 });
        Assert.Equal(fromCopy, fromEnd);
        var ended = Assert.Throws<InvalidOperationException>(() => session.Snapshot());
        Assert.Contains("ended", ended.Message);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await Reply(session, "x", Greedy with { MaxTokens = 1 }));
    }
}
