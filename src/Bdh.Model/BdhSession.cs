using System.Runtime.CompilerServices;
using Bdh.Model.Inference;
using Bdh.Model.Text;

namespace Bdh.Model;

/// <summary>How a call to <see cref="BdhSession.GenerateAsync(string, GenerationOptions?, CancellationToken)"/> generates. Defaults: 256 tokens, temperature 1, no top-k or top-p, seed 1337.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens (bytes) to generate; 0 only reads the prompt.</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>Softmax temperature, &gt; 0.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Draw among the k most likely tokens only; 1 is greedy.</summary>
    public int? TopK { get; init; }
    /// <summary>Draw among the most likely tokens whose probabilities first reach p (nucleus sampling), in (0, 1].</summary>
    public double? TopP { get; init; }
    /// <summary>The seed of this call's draws: the same session state, prompt, options and seed give the same tokens.</summary>
    public ulong Seed { get; init; } = 1337;
    /// <summary>Generation stops when the reply ends with one of these; the stop sequence is not part of the reply's text.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];
    /// <summary>Sees every layer of each generated token as the model reads it (the step after the token is drawn; the last token drawn is read by the next call, unobserved).</summary>
    public LayerObserver<float>? Observer { get; init; }

    internal SamplingOptions Sampling => new(Temperature, TopK, Seed, TopP);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of its range.</summary>
    public GenerationOptions Validate()
    {
        if (MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "max tokens must be >= 0");
        ArgumentNullException.ThrowIfNull(StopSequences);
        Sampling.Validate();
        return this;
    }
}

/// <summary>Why a reply ended.</summary>
public enum FinishReason
{
    /// <summary>The reply reached one of the stop sequences.</summary>
    Stop,
    /// <summary>The reply reached <see cref="GenerationOptions.MaxTokens"/>.</summary>
    Length,
}

/// <summary>
/// One generated token: its <paramref name="Id"/> (a byte value), the <paramref name="Text"/> it makes visible
/// (concatenated, the reply; often "" while a UTF-8 character or a possible stop sequence is incomplete), and
/// on the last token only, why the reply ended.
/// </summary>
public readonly record struct GeneratedToken(int Id, string Text, FinishReason? Finish);

/// <summary>
/// One conversation with a <see cref="BdhLanguageModel"/>. Its whole memory is the synaptic state ρ of every layer,
/// a fixed size whatever the conversation's length (<see cref="BdhLanguageModel.StateBytes"/>): a session can be
/// kept for as long as the conversation lasts, and continuing it costs only the new tokens. It can be forked,
/// snapshotted, restored and saved.
/// </summary>
/// <remarks>
/// A session runs one call at a time (a second one while it generates throws <see cref="InvalidOperationException"/>);
/// different sessions, of one model or several, run concurrently, each giving exactly what it gives alone: they only
/// read the weights, and of the kernels' shared workers, the spinning team behind <c>Parallelism.For</c> serves one fork
/// at a time while forks made meanwhile go to the thread pool; no result depends on which threads run it.
/// The last token of the conversation (the last generated one, or the prompt's last when nothing is generated)
/// is kept unread: the next call reads it first. A <see cref="StateSnapshot"/> holds it as its pending token.
/// </remarks>
public sealed class BdhSession
{
    private FastStepper<float> _stepper;
    private int? _pendingToken;
    private int _busy; // Free, Busy or Ended
    private const int Free = 0, Busy = 1, Ended = 2;

    internal BdhSession(BdhLanguageModel model, FastStepper<float> stepper, int? pendingToken)
    {
        Model = model;
        _stepper = stepper;
        _pendingToken = pendingToken;
    }

    public BdhLanguageModel Model { get; }

    /// <summary>Tokens in the conversation so far: every prompt byte and generated token.</summary>
    public int Length => _stepper.Position + (_pendingToken is null ? 0 : 1);

    /// <summary>
    /// Reads <paramref name="prompt"/> after the conversation so far, then generates a reply token by token: each is
    /// drawn as the caller asks for the next (the model runs on the thread pool, never ahead of the reader). The
    /// tokens become part of the conversation as they are drawn, so after a stop sequence, the end of
    /// <see cref="GenerationOptions.MaxTokens"/>, or a cancellation (which throws <see cref="OperationCanceledException"/>
    /// within a token), the next call continues after the last token drawn. Canceled while it reads a long prompt, a call
    /// stops within 64 tokens of it, and the session keeps the part it read.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">an option out of its range (thrown here, before anything runs).</exception>
    /// <exception cref="ArgumentException">on enumeration: an empty prompt in a new session.</exception>
    /// <exception cref="InvalidOperationException">on enumeration: the session is already busy.</exception>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return GenerateAsync(ByteTokens.Encode(prompt), options, cancellationToken);
    }

    /// <summary>As <see cref="GenerateAsync(string, GenerationOptions?, CancellationToken)"/>, the prompt given as its tokens (byte values): a prompt may then end inside a UTF-8 character.</summary>
    /// <exception cref="ArgumentOutOfRangeException">a token that is not a byte value, or an option out of its range.</exception>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(int[] promptTokens, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        foreach (int token in promptTokens) ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)token, (uint)ByteTokens.VocabSize, nameof(promptTokens));
        return Generate(promptTokens, (options ?? new GenerationOptions()).Validate(), cancellationToken);
    }

    private async IAsyncEnumerable<GeneratedToken> Generate(int[] prompt, GenerationOptions options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            int[] input = _pendingToken is int pending ? [pending, .. prompt] : prompt;
            if (input.Length == 0) throw new ArgumentException("a new session needs a non-empty prompt", nameof(prompt));
            if (options.MaxTokens == 0)
            {
                await ReadInTurns(input, logits: null, cancellationToken).ConfigureAwait(false);
                yield break;
            }
            var logits = new float[ByteTokens.VocabSize];
            var sampling = options.Sampling;
            var rng = new Rng(options.Seed);
            var reply = new ReplyText(options.StopSequences);
            await ReadInTurns(input, logits, cancellationToken).ConfigureAwait(false);
            for (int count = 1; ; count++)
            {
                int next = Sampler.Draw(logits, sampling, rng);
                _pendingToken = next;
                string text = reply.Add((byte)next);
                if (reply.Stopped || count == options.MaxTokens)
                {
                    yield return reply.Stopped ? new(next, text, FinishReason.Stop) : new(next, text + reply.Finish(), FinishReason.Length);
                    yield break;
                }
                yield return new(next, text, null);
                _stepper.Observer = options.Observer; // from here on, every step reads a generated token
                // Canceled before it starts, the step never runs: the drawn token stays pending, as after a finished reply.
                await InTurn(() => Read([next], logits), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _stepper.Observer = null;
            Exit();
        }
    }

    /// <summary>
    /// Runs one step of the model on the thread pool, queued behind every other session's waiting step (the pool's global
    /// queue, first in first out). Task.Run from a pool thread would queue it on that thread's own queue, which the thread
    /// serves first: one session would then run its whole reply while the others wait, and concurrent replies would
    /// come one after another, each in a burst, instead of side by side.
    /// </summary>
    private static Task InTurn(Action step, CancellationToken cancellationToken) =>
        Task.Factory.StartNew(step, cancellationToken, TaskCreationOptions.PreferFairness | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);

    /// <summary>Steps <paramref name="tokens"/> and writes the next token's logits [V].</summary>
    private void Read(int[] tokens, float[] logits)
    {
        _stepper.Prefill(tokens).CopyTo(logits);
        _pendingToken = null;
    }

    /// <summary>Prompt tokens stepped per turn after a prompt's parallel pass: a canceled call stops within this many.</summary>
    private const int StepsPerTurn = 64;

    /// <summary>
    /// Reads a prompt in the pieces one <see cref="FastStepper{T}.Prefill(int[])"/> would (a new session's first
    /// <see cref="FastStepper{T}.ParallelPrefillTokens"/> in one parallel pass, then a token at a time: the same bits),
    /// each piece a turn of its own, so a call canceled mid-prompt stops within <see cref="StepsPerTurn"/> tokens instead
    /// of after all of them (an 18 KB prompt held <c>bdh serve</c>'s slot 12–15 s after its client had gone, on the trained
    /// <c>cpu</c> model and 1 thread; 0.13 s since). With <paramref name="logits"/>,
    /// every token is read and the logits after the last written; without, the last is left pending. Canceled part-way,
    /// the session keeps what it read and the next token pending; the rest of the prompt is not part of it.
    /// </summary>
    private async Task ReadInTurns(int[] tokens, float[]? logits, CancellationToken cancellationToken)
    {
        int end = logits is null ? tokens.Length - 1 : tokens.Length, read = 0;
        bool done = false;
        try
        {
            while (read < end)
            {
                int[] piece = tokens[read..Math.Min(end, read + (_stepper.Position == 0 ? FastStepper<float>.ParallelPrefillTokens : StepsPerTurn))];
                bool last = read + piece.Length == end;
                await InTurn(() =>
                {
                    var after = _stepper.Prefill(piece);
                    if (last && logits is not null) after.CopyTo(logits);
                }, cancellationToken).ConfigureAwait(false);
                read += piece.Length;
            }
            done = true;
        }
        finally
        {
            // A new session canceled before it read anything stays empty; otherwise the next unread token waits.
            if (done || read > 0 || _pendingToken is not null) _pendingToken = read < tokens.Length ? tokens[read] : null;
        }
    }

    /// <summary>An independent copy of the conversation so far; the two continue on their own.</summary>
    public BdhSession Fork()
    {
        Enter();
        try { return _pendingToken is null ? Model.StartSession() : Model.ResumeSession(CaptureState()); }
        finally { Exit(); }
    }

    /// <summary>The conversation so far, to <see cref="Restore"/> later, resume in another session or save.</summary>
    /// <exception cref="InvalidOperationException">the session is empty or busy.</exception>
    public StateSnapshot Snapshot()
    {
        Enter();
        try { return CaptureState(); }
        finally { Exit(); }
    }

    /// <summary>Goes back to <paramref name="snapshot"/> (taken from any session of a model of this shape), which stays as it is.</summary>
    public void Restore(StateSnapshot snapshot)
    {
        var restored = Model.ResumeSession(snapshot);
        Enter();
        (_stepper, _pendingToken) = (restored._stepper, restored._pendingToken);
        Exit();
    }

    /// <summary>
    /// Ends the session and hands its conversation over as a snapshot without the copy <see cref="Snapshot"/> makes
    /// (<see cref="BdhLanguageModel.StateBytes"/>, 192 MB on the paper's config): for a conversation kept only as its
    /// state, as <c>bdh serve</c> keeps them. Every later call on the session throws.
    /// </summary>
    /// <exception cref="InvalidOperationException">the session is empty, busy or already ended.</exception>
    public StateSnapshot End()
    {
        Enter();
        try
        {
            var state = (SynapticState<float>)_stepper.Memory;
            _ = state.Rho; // joins the pending tokens to ρ, as a copy does, so that resuming the snapshot only reads it
            var snapshot = new StateSnapshot(state, _stepper.Position, _pendingToken ?? throw new InvalidOperationException("the session is empty: nothing to hand over"));
            Volatile.Write(ref _busy, Ended);
            return snapshot;
        }
        finally
        {
            Interlocked.CompareExchange(ref _busy, Free, Busy); // still usable when it was empty
        }
    }

    /// <summary>Writes the conversation so far to a safetensors file (the format of <c>bdh sample --save-state</c>); <see cref="BdhLanguageModel.LoadSession"/> reads it.</summary>
    public void Save(string path) => Snapshot().Save(path, Model.Config);

    private StateSnapshot CaptureState() =>
        StateSnapshot.Capture(_stepper, _pendingToken ?? throw new InvalidOperationException("the session is empty: nothing to snapshot"));

    private void Enter()
    {
        switch (Interlocked.CompareExchange(ref _busy, Busy, Free))
        {
            case Busy: throw new InvalidOperationException("the session is busy: a session runs one call at a time (fork it to run another)");
            case Ended: throw new InvalidOperationException("the session has ended: its state was handed over by End()");
        }
    }

    private void Exit() => Volatile.Write(ref _busy, Free);
}
