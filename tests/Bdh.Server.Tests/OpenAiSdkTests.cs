using System.ClientModel;
using Bdh.Extensions.AI;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Bdh.Server.Tests;

/// <summary>The server through the official OpenAI .NET SDK and Microsoft.Extensions.AI.OpenAI, as any OpenAI application would reach it.</summary>
public class OpenAiSdkTests
{
    private static async Task<string> Expected(string question, int maxTokens) =>
        (await new BdhChatClient(ServerClient.Trained.Value).GetResponseAsync([new ChatMessage(ChatRole.User, question)],
            new ChatOptions { TopK = 1, MaxOutputTokens = maxTokens })).Text;

    private static ChatClient SdkClient(ServerClient client) =>
        new(ServerClient.Trained.Value.Name, new ApiKeyCredential("sdk-key"), new OpenAIClientOptions { Endpoint = new Uri(client.Server.Address, "v1") });

    [Fact]
    public async Task TheOpenAiSdkCompletesAndStreamsAChat()
    {
        await using var client = await ServerClient.Start(new ServerOptions { ApiKey = "sdk-key" });
        var sdk = SdkClient(client);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 80 };
        ChatCompletion completion = await sdk.CompleteChatAsync([new UserChatMessage("Who art thou?")], options);
        string expected = await Expected("Who art thou?", 80);
        Assert.NotEmpty(expected);
        Assert.Equal(expected, completion.Content[0].Text);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal("Who art thou?".Length + "USER:\n\n\nASSISTANT:\n".Length, completion.Usage.InputTokenCount);

        var streamed = new System.Text.StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var update in sdk.CompleteChatStreamingAsync([new UserChatMessage("Who art thou?")], options))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(expected, streamed.ToString());
        Assert.Equal(completion.FinishReason, finish);

        var unauthorized = new ChatClient(ServerClient.Trained.Value.Name, new ApiKeyCredential("wrong"), new OpenAIClientOptions { Endpoint = new Uri(client.Server.Address, "v1") });
        var error = await Assert.ThrowsAsync<ClientResultException>(() => unauthorized.CompleteChatAsync([new UserChatMessage("Hi")], options));
        Assert.Equal(401, error.Status);
    }

    [Fact]
    public async Task MicrosoftExtensionsAiOpenAiKeepsAConversationOnTheServer()
    {
        await using var client = await ServerClient.Start();
        IChatClient chat = SdkClient(client).AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 60 };
        List<ChatMessage> history = [new(ChatRole.User, "What light through yonder window breaks?")];
        var first = await chat.GetResponseAsync(history, options);
        Assert.Equal(await Expected("What light through yonder window breaks?", 60), first.Text);
        history.AddRange(first.Messages);
        history.Add(new(ChatRole.User, "Speak again."));
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in chat.GetStreamingResponseAsync(history, options)) updates.Add(update);
        var second = updates.ToChatResponse();
        var direct = await new BdhChatClient(ServerClient.Trained.Value).GetResponseAsync(history, new ChatOptions { TopK = 1, MaxOutputTokens = 60 });
        Assert.Equal(direct.Text, second.Text);
        Assert.Equal(2, client.Server.KeptConversations); // the first turn's state, which the second resumed, and the second's
    }
}
