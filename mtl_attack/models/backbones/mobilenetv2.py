"""MobileNetV2 (Sandler et al., CVPR 2018) cut into 5 coarse blocks, optionally dilated."""

from __future__ import annotations

from torch import nn

from mtl_attack.models.backbones.base import Backbone

#: inverted-residual stages (expansion t, channels c, repeats n, stride s) of the paper's
#: Table 2, grouped into the 5 coarse blocks (the stem conv leads coarse block 0)
COARSE_STAGES = (
    ((1, 16, 1, 1),),
    ((6, 24, 2, 2),),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)


def conv_bn_relu6(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1
) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, pad, dilation, groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (x t) -> 3x3 depthwise (stride, dilation) -> 1x1 linear projection.

    Residual connection when the shape is kept. Shape: (B, in, H, W) -> (B, out, H/s, W/s).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        hidden = in_ch * expand
        layers = [conv_bn_relu6(in_ch, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, dilation, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(Backbone):
    """MobileNetV2 features without the final 1x1 conv to 1280 channels, in 5 coarse blocks.

    Coarse blocks (fine blocks, channels, stride w.r.t. the image at ``output_stride=32``):
    0 = stem conv3x3 s2 + bottleneck t1-c16 (2, 16, 2); 1 = bottlenecks c24 (2, 24, 4);
    2 = c32 (3, 32, 8); 3 = c64 + c96 (7, 96, 16); 4 = c160 + c320 (4, 320, 32):
    18 fine blocks. With ``output_stride`` 8 or 16 (DeepLab-style dense features, the default
    8 like the ResNet-34) the later strides become 1 and their depthwise convs dilate instead.
    """

    def __init__(self, output_stride: int = 8):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"backbone.output_stride must be 8, 16 or 32, got {output_stride}")
        blocks, fine = [], [conv_bn_relu6(3, 32, 3, 2)]
        in_ch, stride_now, dilation = 32, 2, 1
        for stages in COARSE_STAGES:
            for expand, out_ch, repeats, stride in stages:
                if stride > 1 and stride_now >= output_stride:
                    dilation, stride = dilation * stride, 1
                stride_now *= stride
                for j in range(repeats):
                    first = j == 0
                    fine.append(
                        InvertedResidual(in_ch, out_ch, stride if first else 1, expand, dilation)
                    )
                    in_ch = out_ch
            blocks.append(nn.Sequential(*fine))
            fine = []
        self.blocks = nn.ModuleList(blocks)
        self.channels = [16, 24, 32, 96, 320]
        self.output_stride = output_stride
