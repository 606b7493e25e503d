using System.CommandLine;
using Bdh.Model;
using Bdh.Server;

namespace Bdh.Cli;

/// <summary>bdh serve: the OpenAI-compatible server and the playground, until SIGTERM or Ctrl+C (then exit 0).</summary>
public static class ServeCommand
{
    /// <summary>Where the API key may come from instead of the flag (which other users may see in the process list).</summary>
    public const string ApiKeyVariable = "BDH_API_KEY";

    public static Command Create()
    {
        var defaults = new ServerOptions();
        var checkpoint = CommonOptions.Checkpoint();
        var port = new Option<int>("--port") { Description = "Port to listen on (0: any free one)", DefaultValueFactory = _ => defaults.Port };
        var host = new Option<string>("--host") { Description = "Address to listen on: loopback unless told otherwise (0.0.0.0: every interface)", DefaultValueFactory = _ => defaults.Host };
        var apiKey = new Option<string?>("--api-key") { Description = $"Require Authorization: Bearer KEY on /v1 (or set {ApiKeyVariable})" };
        var concurrent = new Option<int>("--max-concurrent") { Description = "Requests generating at once", DefaultValueFactory = _ => defaults.MaxConcurrentRequests };
        var queue = new Option<int>("--queue") { Description = "Requests waiting for a slot; more get 429", DefaultValueFactory = _ => defaults.MaxQueuedRequests };
        var cacheMb = new Option<long>("--cache-mb") { Description = "Memory for kept conversations, MB (each is one synaptic state)", DefaultValueFactory = _ => defaults.CacheBytes >> 20 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Largest max_tokens a request may ask for", DefaultValueFactory = _ => defaults.MaxCompletionTokens };
        var maxPrompt = new Option<int>("--max-prompt") { Description = "Longest prompt, tokens (bytes)", DefaultValueFactory = _ => defaults.MaxPromptTokens };
        var threads = CommonOptions.Threads();
        var command = new Command("serve", "Serve a checkpoint over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, streaming) with a playground at /.")
            { checkpoint, port, host, apiKey, concurrent, queue, cacheMb, maxTokens, maxPrompt, threads };
        command.SetAction(async (r, cancellationToken) =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            if (r.GetValue(port) is < 0 or > 65535) throw new UserError("--port: must be in [0, 65535]");
            if (r.GetValue(concurrent) < 1) throw new UserError("--max-concurrent: must be >= 1");
            if (r.GetValue(queue) < 0) throw new UserError("--queue: must be >= 0");
            if (r.GetValue(cacheMb) is < 0 or > 1L << 30) throw new UserError("--cache-mb: must be in [0, 2^30]");
            if (r.GetValue(maxTokens) < 1) throw new UserError("--max-tokens: must be >= 1");
            if (r.GetValue(maxPrompt) < 1) throw new UserError("--max-prompt: must be >= 1");
            string? key = r.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyVariable);
            if (key is { Length: 0 }) throw new UserError($"--api-key: must not be empty (nor {ApiKeyVariable})");
            var options = new ServerOptions
            {
                Host = r.GetValue(host)!, Port = r.GetValue(port), ApiKey = key,
                MaxConcurrentRequests = r.GetValue(concurrent), MaxQueuedRequests = r.GetValue(queue), CacheBytes = r.GetValue(cacheMb) << 20,
                MaxCompletionTokens = r.GetValue(maxTokens), DefaultCompletionTokens = Math.Min(defaults.DefaultCompletionTokens, r.GetValue(maxTokens)),
                MaxPromptTokens = r.GetValue(maxPrompt),
            };
            BdhLanguageModel model;
            try { model = BdhLanguageModel.Load(r.GetValue(checkpoint)!); }
            catch (FileNotFoundException e) { throw new UserError($"--checkpoint: {e.Message}"); }
            BdhServer server;
            try { server = await BdhServer.StartAsync(model, options, cancellationToken); }
            catch (ArgumentException e) when (e.ParamName == "options") { throw new UserError($"--host: {e.Message.Split(" (Parameter")[0]}"); }
            catch (IOException e) { throw new UserError($"--host/--port: cannot listen on {options.Host}:{options.Port}: {e.Message}"); }
            await using (server)
            {
                Console.Error.WriteLine($"bdh serve: {model.Name} at {server.Address} (playground: {server.Address}, API: {server.Address}v1){(key is null ? "" : ", API key required")}");
                await server.WaitForShutdownAsync();
            }
            Console.Error.WriteLine("bdh serve: stopped");
            return 0;
        });
        return command;
    }
}
