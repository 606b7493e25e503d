using System.Globalization;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace Bdh.Server.Tests;

/// <summary>
/// The playground in a real browser: Debian's chromium, headless, driven by chromium-driver through Selenium. Skipped,
/// with the reason, only where they are not installed (.ci/run installs them, or says why it could not).
/// </summary>
public class PlaygroundBrowserTests
{
    private const string Chromium = "/usr/bin/chromium", Driver = "/usr/bin/chromedriver";
    /// <summary>Set to a file name, the test saves a screenshot of the page there (README's picture: see README, "Serve it").</summary>
    private const string ScreenshotVariable = "BDH_PLAYGROUND_SCREENSHOT";

    [SkippableFact]
    public async Task TheTextStreamsInAndTheActivityViewFollowsIt()
    {
        Skip.IfNot(File.Exists(Chromium) && File.Exists(Driver), $"{Chromium} and {Driver} are needed (apt-get install chromium chromium-driver)");
        await using var client = await ServerClient.Start(new ServerOptions { ApiKey = "page-key" });
        var options = new ChromeOptions { BinaryLocation = Chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100");
        using var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(Driver), Path.GetFileName(Driver));
        service.HideCommandPromptWindow = true;
        using var browser = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
        browser.Navigate().GoToUrl(client.Server.Address);

        var prompt = browser.FindElement(By.Id("prompt"));
        prompt.Clear();
        prompt.SendKeys("JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n\nROMEO:\n");
        browser.FindElement(By.Id("api-key")).SendKeys("page-key");
        var maxTokens = browser.FindElement(By.Id("max-tokens"));
        maxTokens.Clear();
        maxTokens.SendKeys("120");
        var seed = browser.FindElement(By.Id("seed"));
        seed.SendKeys("7");
        browser.FindElement(By.Id("generate")).Click();

        var wait = new WebDriverWait(browser, TimeSpan.FromSeconds(30));
        wait.Until(b => b.FindElement(By.Id("status")).Text.StartsWith("done", StringComparison.Ordinal) || b.FindElement(By.Id("status")).Text.StartsWith("error", StringComparison.Ordinal));
        Assert.StartsWith("done", browser.FindElement(By.Id("status")).Text);
        // The text streamed into the page is the server's completion of the request the page sent (its fields as the page
        // holds them), asked for again without streaming.
        string Field(string id) => browser.FindElement(By.Id(id)).GetDomProperty("value")!;
        var (status, json) = await client.Post("/v1/completions", new
        {
            prompt = Field("prompt"), max_tokens = int.Parse(Field("max-tokens")), temperature = double.Parse(Field("temperature"), CultureInfo.InvariantCulture),
            top_p = double.Parse(Field("top-p"), CultureInfo.InvariantCulture), seed = int.Parse(Field("seed")),
        });
        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        string expected = json.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.True(expected.Length > 20, $"the completion is only '{expected}'");
        Assert.Equal(expected, browser.FindElement(By.Id("completion")).GetDomProperty("textContent"));

        // The activity view: one entry per token the model read, densities per layer, neurons, and ρ drawn.
        int layers = ServerClient.Trained.Value.Config.NLayer;
        Assert.Equal(119, int.Parse(browser.FindElement(By.Id("activity")).GetAttribute("data-tokens")!));
        Assert.Equal(layers, browser.FindElements(By.CssSelector("#density .layer")).Count);
        Assert.All(browser.FindElements(By.CssSelector("#density .bar.xs > div")), bar => Assert.NotEqual("0%", bar.GetCssValue("width")));
        Assert.NotEmpty(browser.FindElements(By.CssSelector("#neurons tbody tr")));
        for (int layer = 0; layer < layers; layer++)
            Assert.True(float.Parse(browser.FindElement(By.Id($"rho-{layer}")).GetAttribute("data-max")!) > 0, $"layer {layer}'s heatmap is drawn");
        Assert.Equal(ServerClient.Trained.Value.Name, browser.FindElement(By.Id("model-name")).Text);

        if (Environment.GetEnvironmentVariable(ScreenshotVariable) is { Length: > 0 } file)
            browser.GetScreenshot().SaveAsFile(file);
    }
}
