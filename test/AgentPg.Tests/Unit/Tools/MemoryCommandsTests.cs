using System.Text.Json;
using AgentPg.Memory;

namespace AgentPg.Tests.Unit.Tools;

public sealed class MemoryCommandsTests
{
    private static MemoryFile File(string path, string content) => new() { Path = path, Content = content, SizeBytes = System.Text.Encoding.UTF8.GetByteCount(content) };

    private static MemoryOutcome Run(object input, params MemoryFile[] files)
        => new MemoryCommands(files, AgentMemory.PerAgent).Execute(JsonSerializer.SerializeToElement(input));

    [Theory]
    [InlineData("/memories", "/memories")]
    [InlineData("/memories/", "/memories")]
    [InlineData("/memories//a/./b.md/", "/memories/a/b.md")]
    [InlineData("/memories/a b/ü.md", "/memories/a b/ü.md")]
    [InlineData("/memories/..", null)]
    [InlineData("/memories/a/../../x", null)]
    [InlineData("/memories/%2E%2E/x", null)]
    [InlineData("/memoriesX/a", null)]
    [InlineData("memories/a", null)]
    [InlineData("/memories/a\\b", null)]
    [InlineData("/memories/a\nb", null)]
    [InlineData("/memories/a\uFFFDb", null)]
    [InlineData("", null)]
    public void Normalize_Paths_KeepsOneNameForAFile_AndRefusesWhatLeavesOrObscuresMemories(string path, string? expected)
        => Assert.Equal(expected, MemoryPaths.Normalize(path, out _));

    [Theory]
    [InlineData(0, "0B")]
    [InlineData(512, "512B")]
    [InlineData(1024, "1K")]
    [InlineData(1536, "1.5K")]
    [InlineData(2 * 1024 * 1024, "2M")]
    public void Size_AsTheListingShowsIt(long bytes, string expected) => Assert.Equal(expected, MemoryCommands.Size(bytes));

    [Fact]
    public void View_Directory_ListsTwoLevelsLeavingHiddenItemsOut_EachDirectoryFollowedByItsContent()
    {
        var outcome = Run(new { command = "view", path = "/memories/" },
            File("/memories/b.md", "bb"), File("/memories/a/x.md", "x"), File("/memories/a/deep/y.md", "yyy"), File("/memories/.hidden/z", "z"),
            File("/memories/a-b.md", "1"));

        Assert.False(outcome.IsError);
        Assert.Equal(
            "Here're the files and directories up to 2 levels deep in /memories, excluding hidden items:\n8B\t/memories\n1B\t/memories/a-b.md\n" +
            "4B\t/memories/a/\n3B\t/memories/a/deep/\n1B\t/memories/a/x.md\n2B\t/memories/b.md", outcome.Text);
    }

    [Fact]
    public void StrReplace_SeveralOccurrences_NamesTheirLines_AndChangesNothing()
    {
        var outcome = Run(new { command = "str_replace", path = "/memories/a.md", old_str = "x", new_str = "y" }, File("/memories/a.md", "x\nz\nx"));

        Assert.True(outcome.IsError);
        Assert.Null(outcome.Change);
        Assert.Equal("No replacement was performed. Multiple occurrences of old_str `x` in lines: 1, 3. Please ensure it is unique", outcome.Text);
    }

    [Fact]
    public void RenameAndCreate_IntoItselfOrUnderAFile_AreRefused()
    {
        var files = new[] { File("/memories/a/x.md", "x"), File("/memories/f.md", "f") };

        Assert.Equal("Cannot move /memories/a into itself (/memories/a/b).", Run(new { command = "rename", old_path = "/memories/a", new_path = "/memories/a/b" }, files).Text);
        Assert.Equal("Cannot create /memories/f.md/g: /memories/f.md is a file, not a directory.", Run(new { command = "create", path = "/memories/f.md/g", file_text = "" }, files).Text);
        Assert.Equal("The path /memories/a is a directory.", Run(new { command = "create", path = "/memories/a", file_text = "" }, files).Text);
        Assert.Equal(new MemoryChange.Rename("/memories/a", "/memories/b"), Run(new { command = "rename", old_path = "/memories/a", new_path = "/memories/b" }, files).Change);
    }
}
