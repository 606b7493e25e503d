namespace Bdh.DirectML.Tests;

public class ExecutionProviderTests
{
    [Fact]
    public void TheCpuProviderIsAlwaysAvailable() =>
        Assert.Contains(ExecutionProviders.Cpu, ExecutionProviders.Available());

    [Fact]
    public void DirectMLIsAvailableExactlyOnWindowsBuilds() =>
        Assert.Equal(OperatingSystem.IsWindows(), ExecutionProviders.HasDirectML);
}
