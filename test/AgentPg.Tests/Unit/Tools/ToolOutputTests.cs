using System.Text.Json;
using AgentPg.Compaction;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Unit.Tools;

/// <summary>A tool's <see cref="ToolResult"/> → what Claude receives: blocks it accepts, the rest described in text.</summary>
public sealed class ToolOutputTests
{
    private static readonly byte[] s_png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D];
    private static readonly byte[] s_jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10];
    private static readonly byte[] s_webp = "RIFF\0\0\0\0WEBPVP8 "u8.ToArray();

    private static JsonElement[] Blocks(ToolOutput output)
        => output.BlocksJson is null ? [] : [.. JsonDocument.Parse(output.BlocksJson).RootElement.EnumerateArray()];

    [Fact]
    public void From_TextOnly_IsPlainTextWithoutBlocks()
    {
        var output = ToolOutput.From(ToolResult.FromContent(new TextContent("one"), new TextContent(""), new TextContent("two")));

        Assert.Equal("one\ntwo", output.Text);
        Assert.Null(output.BlocksJson);
        Assert.False(output.IsError);
    }

    [Fact]
    public void From_ImagesClaudeAccepts_BecomeBase64ImageBlocks_WithTheMediaTypeOfTheBytes()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new TextContent("look"), new DataContent(s_png, "image/png"), new DataContent(s_jpeg, "image/jpg"), new DataContent(s_webp, "image/webp")));

        var blocks = Blocks(output);
        Assert.Equal(["text", "image", "image", "image"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("base64", blocks[1].GetProperty("source").GetProperty("type").GetString());
        Assert.Equal(Convert.ToBase64String(s_png), blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("image/jpeg", blocks[2].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("image/webp", blocks[3].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("look\n[image: image/png, 12 bytes]\n[image: image/jpeg, 6 bytes]\n[image: image/webp, 16 bytes]", output.Text);
    }

    [Fact]
    public void From_ImagesClaudeWouldRefuse_AreDescribedInText()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new DataContent("not a png"u8.ToArray(), "image/png"),
            new DataContent("<svg/>"u8.ToArray(), "image/svg+xml"),
            new DataContent(new byte[ToolResult.MaxImageBytes + 1].Select((_, i) => i < s_png.Length ? s_png[i] : (byte)0).ToArray(), "image/png")));

        Assert.Null(output.BlocksJson);
        Assert.Equal(
            "[image: image/png, 9 bytes; not shown: the bytes are not a PNG image]\n" +
            "[image: image/svg+xml, 6 bytes; not shown: Claude accepts JPEG, PNG, GIF and WebP images]\n" +
            "[image: image/png, 5,242,881 bytes; not shown: larger than Claude's 5 MB limit per image]", output.Text);
    }

    [Fact]
    public void From_PdfAndPlainText_BecomeDocumentBlocks_OtherMediaTypesAreDescribed()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new DataContent("%PDF-1.7\n"u8.ToArray(), "application/pdf") { Name = "report.pdf" },
            new DataContent("plain words"u8.ToArray(), "text/plain; charset=utf-8"),
            new DataContent("no pdf"u8.ToArray(), "application/pdf"),
            new DataContent(new byte[] { 0xC3, 0x28 }, "text/plain"),
            new DataContent(new byte[] { 1, 2 }, "audio/wav"),
            new UriContent(new Uri("https://example.com/a.png"), "image/png")));

        var blocks = Blocks(output);
        Assert.Equal(["document", "document", "text", "text", "text", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("report.pdf", blocks[0].GetProperty("title").GetString());
        Assert.Equal("application/pdf", blocks[0].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("text", blocks[1].GetProperty("source").GetProperty("type").GetString());
        Assert.Equal("plain words", blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("[document: application/pdf, 6 bytes; not shown: the bytes are not a PDF]", blocks[2].GetProperty("text").GetString());
        Assert.Equal("[document: text/plain, 2 bytes; not shown: not valid UTF-8 text]", blocks[3].GetProperty("text").GetString());
        Assert.Equal("[content: audio/wav, 2 bytes; not shown: Claude does not accept audio/wav in a tool result]", blocks[4].GetProperty("text").GetString());
        Assert.StartsWith("[link: https://example.com/a.png (image/png)", blocks[5].GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("[document: report.pdf, application/pdf, 9 bytes]\n[document: text/plain, 11 bytes]\n", output.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void From_ErrorResult_KeepsItsContentAndTheFlag_AndNulIsReplaced()
    {
        var output = ToolOutput.From(new ToolResult { Content = [new TextContent("bad\0thing"), new DataContent(s_png, "image/png")], IsError = true });

        Assert.True(output.IsError);
        Assert.Equal("bad\uFFFDthing\n[image: image/png, 12 bytes]", output.Text);
        Assert.Equal("bad\uFFFDthing", Blocks(output)[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task ContentTool_ExecuteAsync_ReturnsTheText_OrThrowsToolDiscardForAnError()
    {
        ITool ok = new ContentTool(ToolResult.FromContent(new TextContent("hi"), new DataContent(s_png, "image/png")));
        ITool failing = new ContentTool(ToolResult.Error("broken"));

        Assert.Equal("hi\n[image: image/png, 12 bytes]", await ok.ExecuteAsync(null!, default, CancellationToken.None));
        var discard = await Assert.ThrowsAsync<ToolDiscardException>(() => failing.ExecuteAsync(null!, default, CancellationToken.None));
        Assert.Equal("tool discarded: broken", discard.Message);
    }

    [Fact]
    public void TokenEstimate_ToolResultWithAnImage_CountsTheImageNotItsBase64()
    {
        var output = ToolOutput.From(ToolResult.FromContent(new TextContent("a chart"), new DataContent(new byte[200_000].Select((_, i) => i < s_png.Length ? s_png[i] : (byte)0).ToArray(), "image/png"),
            new DataContent("twelve chars"u8.ToArray(), "text/plain")));
        var block = new ContentBlock
        {
            Type = ContentTypes.ToolResult,
            ToolContent = output.Text,
            ToolContentBlocks = ContentBlocks.FromJsonArray(output.BlocksJson!),
        };

        Assert.Equal(TokenEstimate.ToolBlockOverhead + 2 + TokenEstimate.ImageTokens + 3, TokenEstimate.Of(block));
    }

    private sealed class ContentTool(ToolResult result) : IContentTool
    {
        public string Name => "content";

        public string Description => "";

        public ToolSchema InputSchema => new();

        public Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => Task.FromResult(result);
    }

    [Fact]
    public void Truncate_CutsAfterTheLimit_NeverInsideASurrogatePair_AndSaysHowMuchWasLeftOut()
    {
        Assert.Equal("short", ToolOutput.Truncate("short", 1_000));
        Assert.Equal(new string('x', 5_000), ToolOutput.Truncate(new string('x', 5_000), null));
        Assert.Equal(new string('x', 1_000), ToolOutput.Truncate(new string('x', 1_000), 1_000));

        Assert.Equal(new string('x', 1_000) + "\n[… 1,500 more characters not shown: a tool's output is limited to 1,000 characters]",
            ToolOutput.Truncate(new string('x', 2_500), 1_000));

        // The 1 000th character would be the first half of an emoji: the cut keeps 999.
        var text = new string('a', 999) + "😀" + new string('b', 10);
        var cut = ToolOutput.Truncate(text, 1_000);
        Assert.StartsWith(new string('a', 999) + "\n[… 12 more characters", cut, StringComparison.Ordinal);
        Assert.DoesNotContain('\uD83D', cut);
    }

    [Fact]
    public void From_TextBlocksShareTheLimit_ImagesDoNotCount_AndALastBlockSaysWhatWasCut()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new TextContent(new string('a', 600)), new DataContent(s_png, "image/png"), new TextContent(new string('b', 600)),
            new TextContent("c")), maxLength: 1_000);

        var blocks = Blocks(output);
        Assert.Equal(["text", "image", "text", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal(new string('a', 600), blocks[0].GetProperty("text").GetString());
        Assert.Equal(new string('b', 400), blocks[2].GetProperty("text").GetString());
        Assert.Equal("[… 201 more characters not shown: a tool's output is limited to 1,000 characters]", blocks[3].GetProperty("text").GetString());
        Assert.Equal($"{new string('a', 600)}\n[image: image/png, 12 bytes]\n{new string('b', 400)}\n[… 201 more characters not shown: a tool's output " +
                     "is limited to 1,000 characters]", output.Text);
    }

    [Fact]
    public void From_ATextDocumentSharesTheTextLimit()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new TextContent(new string('a', 400)), new DataContent(System.Text.Encoding.UTF8.GetBytes(new string('d', 900)), "text/plain")), maxLength: 1_000);

        var blocks = Blocks(output);
        Assert.Equal(["text", "document", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal(new string('d', 600), blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("[… 300 more characters not shown: a tool's output is limited to 1,000 characters]", blocks[2].GetProperty("text").GetString());
    }

    [Fact]
    public void From_ImagesAndDocumentsBeyond24MBTogether_AreDescribedInsteadOfSent()
    {
        // Each image is under Claude's 5 MB, but six of them (27 MB, 36 MB of base64) would take the request over 32 MB.
        var image = new byte[4_500_000];
        s_png.CopyTo(image, 0);
        var output = ToolOutput.From(ToolResult.FromContent([.. Enumerable.Range(0, 6).Select(_ => new DataContent(image, "image/png"))]));

        var blocks = Blocks(output);
        Assert.Equal(["image", "image", "image", "image", "image", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.EndsWith("\n[image: image/png, 4,500,000 bytes; not shown: the result's images and documents are limited to 24 MB together]",
            output.Text, StringComparison.Ordinal);
    }
}
