using Bdh.Model;
using Bdh.Model.Tests;
using Microsoft.Extensions.AI;

namespace Bdh.Extensions.AI.Tests;

/// <summary>BdhChatClient used only through Microsoft.Extensions.AI's IChatClient, compared with the library's sessions.</summary>
public class ChatClientTests
{
    private static readonly Lazy<BdhLanguageModel> Trained =
        new(() => BdhLanguageModel.Load(Path.Combine(Shared.Fixtures, "bdh-trained-cpu-tiny-500.safetensors")));

    private static ChatOptions Greedy(int maxTokens) => new() { TopK = 1, MaxOutputTokens = maxTokens };

    [Fact]
    public async Task AResponseIsTheSessionsReplyToTheDocumentedPrompt()
    {
        IChatClient client = new BdhChatClient(Trained.Value);
        ChatMessage[] messages = [new(ChatRole.System, "Speak in verse."), new(ChatRole.User, "Who art thou?"), new(ChatRole.Assistant, "A friend.") { AuthorName = "Romeo" }, new(ChatRole.User, "Come hither.")];
        var response = await client.GetResponseAsync(messages, Greedy(120));

        const string Prompt = "SYSTEM:\nSpeak in verse.\n\nUSER:\nWho art thou?\n\nROMEO:\nA friend.\n\nUSER:\nCome hither.\n\nASSISTANT:\n";
        Assert.Equal(Prompt, BdhChatClient.FormatPrompt(messages));
        var tokens = new List<GeneratedToken>();
        await foreach (var token in Trained.Value.StartSession().GenerateAsync(Prompt, new GenerationOptions { TopK = 1, MaxTokens = 120, StopSequences = ["\n\n"] }))
            tokens.Add(token);
        Assert.Equal(string.Concat(tokens.Select(t => t.Text)), response.Text);
        Assert.NotEmpty(response.Text);
        Assert.Equal(tokens[^1].Finish == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(Prompt.Length, response.Usage?.InputTokenCount);
        Assert.Equal(tokens.Count, response.Usage?.OutputTokenCount);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
        Assert.Equal("bdh-trained-cpu-tiny-500", response.ModelId);
        Assert.NotNull(response.ConversationId);
    }

    [Fact]
    public async Task InstructionsOpenTheConversationAsASystemMessage()
    {
        IChatClient client = new BdhChatClient(Trained.Value);
        var withInstructions = await client.GetResponseAsync("Who art thou?", new ChatOptions { TopK = 1, MaxOutputTokens = 60, Instructions = "Speak in verse." });
        var asMessage = await client.GetResponseAsync([new(ChatRole.System, "Speak in verse."), new(ChatRole.User, "Who art thou?")], Greedy(60));
        Assert.Equal(asMessage.Text, withInstructions.Text);
    }

    [Fact]
    public async Task StreamedUpdatesMakeTheResponse()
    {
        IChatClient client = new BdhChatClient(Trained.Value);
        var options = new ChatOptions { MaxOutputTokens = 80, Temperature = 0.9f, Seed = 5 };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync("ROMEO, speak.", options)) updates.Add(update);
        var response = await client.GetResponseAsync("ROMEO, speak.", options);
        Assert.Equal(response.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.True(updates.Count(u => u.Text.Length > 0) > 1, "the reply comes in pieces");
        Assert.Equal(response.FinishReason, updates[^1].FinishReason);
        Assert.Single(updates.Select(u => u.ConversationId).Distinct());
        var other = await client.GetResponseAsync("ROMEO, speak.", new ChatOptions { MaxOutputTokens = 80, Temperature = 0.9f, Seed = 6 });
        Assert.NotEqual(response.Text, other.Text);
    }

    /// <summary>A ConversationId continues the conversation's session with only the new messages: the same reply as sending everything.</summary>
    [Theory]
    [InlineData(300, "stop")]  // the first reply ends its turn (after 83 tokens)
    [InlineData(12, "length")] // cut by the token limit: the next prompt closes its turn first
    public async Task AConversationContinuesFromItsIdWithOnlyTheNewMessages(int firstReplyTokens, string firstFinish)
    {
        IChatClient client = new BdhChatClient(Trained.Value);
        ChatMessage question = new(ChatRole.User, "What light through yonder window breaks?"), again = new(ChatRole.User, "Speak again.");
        var first = await client.GetResponseAsync([question], new ChatOptions { MaxOutputTokens = firstReplyTokens, Temperature = 0.6f, Seed = 2 });
        Assert.Equal(new ChatFinishReason(firstFinish), first.FinishReason);
        var options = Greedy(60);
        options.ConversationId = first.ConversationId;
        var second = await client.GetResponseAsync([again], options);
        var fromScratch = await client.GetResponseAsync([question, new(ChatRole.Assistant, first.Text), again], Greedy(60));
        Assert.Equal(fromScratch.Text, second.Text);
        Assert.Equal(first.ConversationId, second.ConversationId);
        Assert.NotEqual(first.ConversationId, fromScratch.ConversationId);
        Assert.Equal("\n\nUSER:\nSpeak again.\n\nASSISTANT:\n".Length - (first.FinishReason == ChatFinishReason.Stop ? 2 : 0), second.Usage?.InputTokenCount);
    }

    [Fact]
    public async Task OnlyTheMostRecentlyUsedConversationsAreHeld()
    {
        IChatClient client = new BdhChatClient(Trained.Value, maxConversations: 1);
        var a = await client.GetResponseAsync("A", Greedy(3));
        var b = await client.GetResponseAsync("B", Greedy(3));
        var e = Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync("more", new ChatOptions { ConversationId = a.ConversationId }));
        Assert.Contains(a.ConversationId!, e.Message);
        await client.GetResponseAsync("more", new ChatOptions { ConversationId = b.ConversationId, MaxOutputTokens = 3 });
        Assert.Throws<ArgumentOutOfRangeException>(() => client.GetStreamingResponseAsync("x", new ChatOptions { Temperature = 0 }));
    }

    [Fact]
    public void ServicesNameTheModel()
    {
        using IChatClient client = new BdhChatClient(Trained.Value);
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal("bdhnative", metadata?.ProviderName);
        Assert.Equal("bdh-trained-cpu-tiny-500", metadata?.DefaultModelId);
        Assert.Same(Trained.Value, client.GetService<BdhLanguageModel>());
        Assert.Same(client, client.GetService<BdhChatClient>());
        Assert.Null(client.GetService<ChatClientMetadata>("a key"));
    }
}
