"""Metrics on tiny hand-computed cases, and cross-checks against scikit-image / reference formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from painter_cli import metrics as M
from painter_cli.errors import PainterError

# ---------------------------------------------------------------------------------------------
# registry


def test_metric_for_kind_headlines():
    assert M.metric_for_kind("depth") == ("rmse", False)
    assert M.metric_for_kind("semseg") == ("miou", True)
    assert M.metric_for_kind("panoptic") == ("pq", True)
    assert M.metric_for_kind("keypoints") == ("ap", True)
    assert M.metric_for_kind("instance") == ("ap", True)
    name, higher = M.metric_for_kind("restoration")
    assert (name, higher) == ("psnr", True)
    assert M.metric_for_kind("derain").name == "psnr"
    with pytest.raises(PainterError, match="no metric for codec kind 'nope'"):
        M.metric_for_kind("nope")


def test_one_class_masks_without_background_rank_by_foreground_iou():
    # Black is unlabelled in a one-class semseg task without a background class: its mIoU is 100
    # whatever is painted, so foreground IoU is the headline (eval's star, prompt-select's score).
    from painter_cli.tasks import get_codec

    edges = get_codec("semseg", num_classes=1)
    assert M.metric_for_codec(edges) == ("fg_iou", True)
    with_bg = get_codec("semseg", num_classes=1, background=True)
    assert M.metric_for_codec(with_bg) == ("miou", True)
    assert M.metric_for_codec(get_codec("semseg", num_classes=3)) == ("miou", True)
    assert M.metric_for_codec(get_codec("nyuv2-depth")) == ("rmse", False)


# ---------------------------------------------------------------------------------------------
# depth


def test_depth_metrics_hand_computed():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # the 0 is missing depth: excluded
    pred = np.array([[1.0, 1.0], [5.0, 3.0]])
    m = M.depth_metrics(pred, gt, eigen_crop=False)
    # valid pairs (gt, pred): (1, 1), (2, 1), (4, 5)
    assert m["valid_pixels"] == 3
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1) / 3))
    assert m["abs_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4) / 3)
    # max(gt/pred, pred/gt) = 1, 2, 1.25 -> only 1 is < 1.25; 1.25 < 1.5625; 2 > 1.953
    assert m["d1"] == pytest.approx(1 / 3)
    assert m["d2"] == pytest.approx(2 / 3)
    assert m["d3"] == pytest.approx(2 / 3)
    assert m["log10"] == pytest.approx((math.log10(2) + math.log10(1.25)) / 3)
    e = [0.0, -math.log(2), math.log(1.25)]
    silog = 100 * math.sqrt(sum(x * x for x in e) / 3 - (sum(e) / 3) ** 2)
    assert m["silog"] == pytest.approx(silog)  # = 39.013...
    assert m["silog"] == pytest.approx(39.0133, abs=1e-3)


def test_depth_clips_prediction_and_range():
    gt = np.array([[2.0, 12.0, 0.0005]])  # 12 m and 0.5 mm are outside (1e-3, 10)
    pred = np.array([[np.inf, 1.0, 1.0]])  # inf -> 10 m
    m = M.depth_metrics(pred, gt, eigen_crop=False)
    assert m["valid_pixels"] == 1
    assert m["rmse"] == pytest.approx(8.0)
    m = M.depth_metrics(np.array([[0.0]]), np.array([[1.0]]), eigen_crop=False)
    assert m["abs_rel"] == pytest.approx(1 - 1e-3)  # 0 is clipped to 1e-3 m


def test_depth_eigen_crop_at_official_resolution():
    assert M.eigen_crop_box(480, 640) == (45, 471, 41, 601)
    assert M.eigen_crop_box(960, 1280) == (90, 942, 82, 1202)
    gt = np.ones((480, 640))
    pred = np.full((480, 640), 7.0)  # wrong everywhere outside the crop: must not count
    pred[45:471, 41:601] = 1.0
    pred[45, 41] = 2.0  # first pixel inside the crop
    m = M.depth_metrics(pred, gt)
    assert m["valid_pixels"] == 426 * 560
    assert m["rmse"] == pytest.approx(math.sqrt(1 / (426 * 560)))


def test_depth_meter_averages_per_image_rmse():
    meter = M.DepthMeter(eigen_crop=False)
    gt = np.full((1, 4), 5.0)
    meter.update(gt + 1.0, gt)  # rmse 1
    meter.update(gt + 3.0, gt)  # rmse 3
    meter.update(gt, np.zeros((1, 4)))  # nothing valid: skipped
    out = meter.compute()
    assert out["rmse"] == pytest.approx(2.0)  # a pooled RMSE would be sqrt(5)
    assert (out["images"], out["skipped"]) == (2, 1)


# ---------------------------------------------------------------------------------------------
# semantic segmentation


def test_semseg_meter_hand_computed():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    meter = M.SemsegMeter(3)
    meter.update(pred, gt)
    out = meter.compute()
    # class 0: tp 1, gt 2, pred 2 (the pred 2 on the ignored pixel does not count) -> IoU 1/3
    # class 1: tp 2, gt 2, pred 3 -> IoU 2/3 ; class 2: tp 0, gt 1, pred 0 -> IoU 0
    assert out["iou"] == pytest.approx([100 / 3, 200 / 3, 0.0])
    assert out["miou"] == pytest.approx(100 / 3)
    assert out["pacc"] == pytest.approx(60.0)  # 3 of 5 labelled pixels
    assert out["macc"] == pytest.approx(50.0)  # (1/2 + 1 + 0) / 3
    assert out["fwiou"] == pytest.approx(40.0)  # 2/5 * 1/3 + 2/5 * 2/3 + 1/5 * 0


def test_semseg_classes_without_gt_are_left_out_and_streaming_is_additive():
    meter = M.SemsegMeter(3)
    meter.update(np.array([0, 1]), np.array([0, 0]))  # class 1 predicted but never in gt
    out = meter.compute()
    assert out["miou"] == pytest.approx(50.0)  # only class 0: 1 / (2 + 1 - 1)
    assert math.isnan(out["iou"][1]) and math.isnan(out["iou"][2])
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (2, 8, 8))
    gt[0, 0] = 255
    pred = rng.integers(0, 4, (2, 8, 8))
    one, two = M.SemsegMeter(4), M.SemsegMeter(4)
    one.update(pred, gt)
    two.update(pred[0], gt[0])
    two.update(pred[1], gt[1])
    assert (one.confusion == two.confusion).all()
    with pytest.raises(PainterError, match="outside 0..3"):
        one.update(np.array([4]), np.array([0]))


def test_foreground_meter_hand_computed():
    # Two images of 4 pixels, pooled: TP 2, FP 1, FN 3, TN 2 (5 foreground pixels of 8).
    m = M.ForegroundMeter()
    m.update(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]]))
    m.update(np.array([[1, 0, 0, 0]]), np.array([[1, 1, 1, 0]]))
    out = m.compute()
    assert out["fg_iou"] == pytest.approx(100 * 2 / 6)
    assert out["fg_f1"] == pytest.approx(100 * 4 / 8)
    assert out["fg_precision"] == pytest.approx(100 * 2 / 3)
    assert out["fg_recall"] == pytest.approx(100 * 2 / 5)
    assert out["fg_share"] == pytest.approx(100 * 5 / 8)
    assert out["fg_pacc"] == pytest.approx(100 * 4 / 8)
    assert out["all_bg_pacc"] == pytest.approx(100 * 3 / 8)


def test_foreground_meter_of_a_collapsed_model_is_the_all_background_baseline():
    # Sparse targets (1 edge pixel of 5) painted all background: 80 % pixel accuracy, IoU/F1 0.
    m = M.ForegroundMeter()
    m.update(np.zeros((1, 5), bool), np.array([[0, 0, 1, 0, 0]], bool))
    out = m.compute()
    assert out["fg_iou"] == out["fg_f1"] == out["fg_precision"] == out["fg_recall"] == 0.0
    assert out["fg_pacc"] == out["all_bg_pacc"] == pytest.approx(80.0)
    empty = M.ForegroundMeter()
    empty.update(np.zeros((2, 2), bool), np.zeros((2, 2), bool))
    assert math.isnan(empty.compute()["fg_iou"]) and empty.compute()["fg_precision"] == 0.0
    with pytest.raises(PainterError, match="differ"):
        empty.update(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def test_ade20k_shift():
    assert M.ade20k_gt_to_eval(np.array([0, 1, 150], np.uint8)).tolist() == [255, 0, 149]


# ---------------------------------------------------------------------------------------------
# panoptic

CATS = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 3, "name": "bus", "isthing": 1},  # never appears: left out of the averages
    {"id": 10, "name": "sky", "isthing": 0},
]


def _row(*runs):
    """A 1 x N id map from (id, length) runs."""
    return np.concatenate([np.full(n, i) for i, n in runs])[None, :]


def test_panoptic_two_images_with_crowd_and_void():
    meter = M.PanopticMeter(CATS)
    # Image A: gt person 1 (px 0-5), sky 2 (6-13), crowd person 3 (14-17), void (18-19)
    gt_a = _row((1, 6), (2, 8), (3, 4), (0, 2))
    gt_a_info = [
        {"id": 1, "category_id": 1},
        {"id": 2, "category_id": 10},
        {"id": 3, "category_id": 1, "iscrowd": 1},
    ]
    # pred person 5 = px 0-4 + px 18 (void): IoU = 5 / (6 + 6 - 5 - 1) = 5/6 -> TP
    # pred sky 6 = px 5-12: IoU = 7 / (8 + 8 - 7) = 7/9 -> TP
    # pred person 7 = px 13-17 + px 19: 4 crowd + 1 void of 6 > 1/2 -> ignored, not an FP
    pred_a = _row((5, 5), (6, 8), (7, 5), (5, 1), (7, 1))
    pred_a_info = [
        {"id": 5, "category_id": 1},
        {"id": 6, "category_id": 10},
        {"id": 7, "category_id": 1},
    ]
    meter.update(pred_a, pred_a_info, gt_a, gt_a_info)
    # Image B: gt car 1 (px 0-9), sky 2 (10-19)
    gt_b = _row((1, 10), (2, 10))
    gt_b_info = [{"id": 1, "category_id": 2}, {"id": 2, "category_id": 10}]
    # pred car = px 0-4: IoU 5/10 is not > 0.5 -> FP car and FN car
    # pred person = px 5-9: FP (no crowd person in this image); pred sky exact: TP IoU 1
    pred_b = _row((1, 5), (2, 5), (3, 10))
    pred_b_info = [
        {"id": 1, "category_id": 2},
        {"id": 2, "category_id": 1},
        {"id": 3, "category_id": 10},
    ]
    meter.update(pred_b, pred_b_info, gt_b, gt_b_info)
    out = meter.compute()
    # person: TP 1 (5/6), FP 1 -> PQ (5/6)/1.5, SQ 5/6, RQ 1/1.5
    # car: TP 0, FP 1, FN 1 -> 0 ; sky: TP 2 (7/9 + 1) -> PQ = SQ = 8/9, RQ 1
    person = out["per_class"][1]
    assert (person["tp"], person["fp"], person["fn"]) == (1, 1, 0)
    assert person["pq"] == pytest.approx(100 * (5 / 6) / 1.5)
    assert (out["per_class"][2]["fp"], out["per_class"][2]["fn"]) == (1, 1)
    assert out["per_class"][10]["pq"] == pytest.approx(100 * 8 / 9)
    pq_person, pq_sky = (5 / 6) / 1.5, 8 / 9
    assert out["n"] == 3 and out["n_th"] == 2 and out["n_st"] == 1
    assert out["pq"] == pytest.approx(100 * (pq_person + 0 + pq_sky) / 3)  # 48.148
    assert out["sq"] == pytest.approx(100 * (5 / 6 + 0 + 8 / 9) / 3)
    assert out["rq"] == pytest.approx(100 * (1 / 1.5 + 0 + 1) / 3)
    assert out["pq_th"] == pytest.approx(100 * pq_person / 2)
    assert out["pq_st"] == pytest.approx(100 * pq_sky)


def test_panoptic_accepts_rgb_pngs_and_checks_segments():
    ids = _row((1, 3), (300, 2))
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    assert (M.rgb2id(rgb) == ids).all()
    info = [{"id": 1, "category_id": 1}, {"id": 300, "category_id": 10}]
    meter = M.PanopticMeter({1: True, 10: False})
    meter.update(rgb, info, ids, info)
    assert meter.compute()["pq"] == pytest.approx(100.0)
    with pytest.raises(PainterError, match="segment 300 is in the map but not in segments_info"):
        meter.update(ids, info[:1], ids, info)


# ---------------------------------------------------------------------------------------------
# keypoints


def _person(ann_id, x0, y0, area):
    kpts = []
    for k in range(17):
        kpts += [x0 + 4.0 * k, y0 + 3.0 * k, 2]
    return {
        "id": ann_id,
        "image_id": 1,
        "category_id": 1,
        "keypoints": kpts,
        "num_keypoints": 17,
        "area": area,
        "bbox": [x0, y0, 64.0, 48.0],
        "iscrowd": 0,
    }


def test_keypoint_ap_against_hand_oks():
    gt_ann = _person(1, 10.0, 20.0, 10000.0)
    gt = {
        "images": [{"id": 1, "width": 200, "height": 200}],
        "annotations": [gt_ann],
        "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}],
    }
    exact = [{"image_id": 1, "category_id": 1, "keypoints": gt_ann["keypoints"], "score": 0.9}]
    assert M.keypoint_ap(gt, exact)["ap"] == pytest.approx(100.0)
    # every keypoint 7 px off in x: OKS = mean_i exp(-49 / (2 * area * (2 sigma_i)^2))
    moved = [v + 7.0 if i % 3 == 0 else v for i, v in enumerate(gt_ann["keypoints"])]
    oks = np.mean([math.exp(-49 / (2 * 10000 * (2 * s) ** 2)) for s in M.COCO_KEYPOINT_SIGMAS])
    assert 0.75 < oks < 0.8  # = 0.7797: matched at thresholds 0.50 .. 0.75, not 0.80 .. 0.95
    res = M.keypoint_ap(gt, [{**exact[0], "keypoints": moved}])
    assert res["ap"] == pytest.approx(100 * 6 / 10)
    assert res["ap50"] == pytest.approx(100.0) and res["ap75"] == pytest.approx(100.0)
    assert M.keypoint_ap(gt, [])["ap"] == 0.0
    assert "ignore" not in gt_ann  # the caller's annotations are left untouched


def test_flip_helpers_hand_computed():
    heat = np.arange(3 * 1 * 4, dtype=float).reshape(3, 1, 4)  # K=3, H=1, W=4
    back = M.flip_back(heat, ((1, 2),))
    assert back[0, 0].tolist() == [3, 2, 1, 0]  # channel 0 mirrored
    assert back[1, 0].tolist() == [11, 10, 9, 8]  # channel 1 <- mirrored channel 2
    assert back[2, 0].tolist() == [7, 6, 5, 4]
    orig = np.zeros((1, 1, 4))
    flipped = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    # flip back -> [4, 3, 2, 1]; shift right by one (column 0 kept) -> [4, 4, 3, 2]; average with 0
    avg = M.flip_test_heatmaps(orig, flipped, flip_pairs=())
    assert avg[0, 0].tolist() == [2.0, 2.0, 1.5, 1.0]
    assert M.flip_test_heatmaps(orig, flipped, (), shift=False)[0, 0].tolist() == [2, 1.5, 1, 0.5]


def test_rescore_and_oks_nms():
    kp = np.array([[0, 0, 0.1], [0, 0, 0.5], [0, 0, 0.9]])
    assert M.rescore_keypoints(kp, 0.8) == pytest.approx((0.5 + 0.9) / 2 * 0.8)
    assert M.rescore_keypoints(np.zeros((17, 3)), 0.8) == 0.0
    base = np.stack([np.arange(17) * 5.0, np.arange(17) * 3.0, np.ones(17)], axis=1)
    poses = np.stack([base, base + [1.0, 0, 0], base + [150.0, 0, 0]])
    keep = M.oks_nms(poses, np.array([0.9, 0.95, 0.7]), np.full(3, 5000.0), thr=0.9)
    assert keep == [1, 2]  # the shifted copy of the best pose (OKS ~0.99 > 0.9) is dropped


# ---------------------------------------------------------------------------------------------
# class-agnostic instance AP


def test_instance_meter_mask_ap():
    h, w = 20, 20
    gt = np.zeros((3, h, w), bool)
    gt[0, 0:5, 0:10] = True  # 50 px
    gt[1, 10:15, 0:10] = True  # 50 px
    gt[2, 10:20, 12:20] = True  # crowd region
    pred = np.zeros((3, h, w), bool)
    pred[0] = gt[0]  # exact, IoU 1
    pred[1, 10:15, 0:6] = True  # 30 px of gt 1 ...
    pred[1, 15, 0] = True  # ... + 1 px outside: IoU = 30 / 51 = 0.588 (thresholds 0.50, 0.55)
    pred[2, 12:18, 14:18] = True  # on the crowd region: ignored, even with the top score
    meter = M.InstanceMeter()
    meter.update(pred, np.array([0.9, 0.8, 0.95]), gt, gt_crowd=np.array([0, 0, 1]))
    out = meter.compute()
    # 2 thresholds with both matched (AP 1), 8 with only the exact one: precision 1 up to
    # recall 0.5 -> 51 of the 101 recall points
    assert out["ap50"] == pytest.approx(100.0)
    assert out["ap"] == pytest.approx(100 * (2 + 8 * 51 / 101) / 10)


# ---------------------------------------------------------------------------------------------
# restoration


def test_psnr_hand_computed():
    gt = np.zeros((4, 4, 3))
    pred = np.full((4, 4, 3), 0.1)
    assert M.psnr(pred, gt, "sidd") == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert M.psnr(pred, gt, "lol") == pytest.approx(20.0)
    white, black = np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)
    # MATLAB Y: black -> 16, white -> 235: RMSE 219
    assert M.psnr(white, black, "derain") == pytest.approx(20 * math.log10(255 / 219))
    assert M.psnr(gt, gt, "sidd") == math.inf
    with pytest.raises(PainterError, match="unknown restoration metric variant"):
        M.psnr(gt, gt, "matlab")


def test_matlab_y_channel():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)
    # 16 + 65.481 = 81.48 -> 81; 16 + 128.553 -> 145; 16 + 24.966 -> 41; 16 + 219 * 128/255 = 125.93
    assert M.matlab_y_channel(rgb).tolist() == [[81, 145, 41, 126]]
    # floats in [0,1] are quantised like the saved uint8 prediction (k/255 round-trips)
    assert M.matlab_y_channel(rgb / 255.0).tolist() == [[81, 145, 41, 126]]


def test_ssim_constant_images_hand_computed():
    # no variance: SSIM = luminance term (2 mx my + C1) / (mx^2 + my^2 + C1)
    a, b = np.full((16, 16, 3), 0.5), np.full((16, 16, 3), 0.25)
    c1 = 0.01**2
    assert M.ssim(a, b, "sidd") == pytest.approx((2 * 0.125 + c1) / (0.25 + 0.0625 + c1))
    c1 = (0.01 * 2) ** 2  # LoL: data_range 2
    assert M.ssim(a, b, "lol") == pytest.approx((2 * 0.125 + c1) / (0.25 + 0.0625 + c1))
    ua, ub = np.full((16, 16, 3), 200, np.uint8), np.full((16, 16, 3), 100, np.uint8)
    ya, yb = M.matlab_y_channel(ua)[0, 0], M.matlab_y_channel(ub)[0, 0]  # 188, 102
    c1 = (0.01 * 255) ** 2
    assert M.ssim(ua, ub, "derain") == pytest.approx((2 * ya * yb + c1) / (ya**2 + yb**2 + c1))
    for v in M.VARIANTS:
        assert M.ssim(ua, ua, v) == pytest.approx(1.0)


def _pair(shape, seed):
    rng = np.random.default_rng(seed)
    gt = rng.random(shape)
    pred = np.clip(gt + rng.normal(0, 0.1, shape), 0, 1)
    return pred, gt


def test_lol_matches_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    pred, gt = _pair((24, 20, 3), 1)
    assert M.psnr(pred, gt, "lol") == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=1.0)
    )
    ref = structural_similarity(gt, pred, channel_axis=2, data_range=2.0)  # official: range 2
    assert M.ssim(pred, gt, "lol") == pytest.approx(ref, rel=1e-9)


def test_sidd_psnr_matches_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    pred, gt = _pair((16, 16, 3), 2)
    assert M.psnr(pred, gt, "sidd") == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=1.0)
    )


def _fspecial_gaussian(size, sigma):
    r = (size - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    w = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    return w / w.sum()


def test_derain_ssim_matches_straightforward_matlab_formula():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (15, 14, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-30, 31, gt.shape), 0, 255).astype(np.uint8)
    x, y = M.matlab_y_channel(pred), M.matlab_y_channel(gt)
    win = _fspecial_gaussian(11, 1.5)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):  # filter2(..., 'valid')
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * px * px).sum() - mx * mx
            vy = (win * py * py).sum() - my * my
            cxy = (win * px * py).sum() - mx * my
            values.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    assert len(values) == 5 * 4
    assert M.ssim(pred, gt, "derain") == pytest.approx(np.mean(values), rel=1e-10)
    rmse = math.sqrt(np.mean((x - y) ** 2))
    assert M.psnr(pred, gt, "derain") == pytest.approx(20 * math.log10(255 / rmse))


def test_sidd_ssim_matches_straightforward_3d_volume_formula():
    pred, gt = _pair((7, 6, 3), 4)
    g1 = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    win = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
    win /= win.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(7):
        for j in range(6):
            for c in range(3):
                # replicate padding = clamped indices
                ii = np.clip(np.arange(i - 5, i + 6), 0, 6)
                jj = np.clip(np.arange(j - 5, j + 6), 0, 5)
                cc = np.clip(np.arange(c - 5, c + 6), 0, 2)
                px, py = pred[np.ix_(ii, jj, cc)], gt[np.ix_(ii, jj, cc)]
                mx, my = (win * px).sum(), (win * py).sum()
                vx = (win * px * px).sum() - mx * mx
                vy = (win * py * py).sum() - my * my
                cxy = (win * px * py).sum() - mx * my
                values.append(
                    ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    assert M.ssim(pred, gt, "sidd") == pytest.approx(np.mean(values), rel=1e-10)


def test_restoration_meter_means():
    meter = M.RestorationMeter("sidd")
    gt = np.zeros((8, 8, 3))
    meter.update(np.full_like(gt, 0.1), gt)  # 20 dB
    meter.update(np.full_like(gt, 0.01), gt)  # 40 dB
    out = meter.compute()
    assert out["psnr"] == pytest.approx(30.0)
    assert out["images"] == 2


# ----------------------------------------------------------------------------------------------
# Few-shot segmentation (FSS-1000 protocol)


def _rows(a: int, b: int) -> np.ndarray:
    m = np.zeros((32, 32), bool)
    m[a:b] = True
    return m


def _cols(a: int, b: int) -> np.ndarray:
    m = np.zeros((32, 32), bool)
    m[:, a:b] = True
    return m


def test_fewshot_two_classes_by_hand():
    # Class a: a1 = rows 0:16, a2 = rows 8:24; each query predicted as the other's mask:
    #   fg 256 / 768 twice -> IoU 512 / 1536 = 1/3; bg: 256 / 768 twice.
    # Class b: b1 = cols 0:8, b2 = cols 0:16, swapped: fg 256 / 512 twice -> 1/2; bg 512 / 768 twice.
    # mIoU = (1/3 + 1/2) / 2; fg pooled 1024 / 2560 = 0.4; bg pooled 1536 / 3072 = 0.5.
    meter = M.FewShotMeter()
    a1, a2, b1, b2 = _rows(0, 16), _rows(8, 24), _cols(0, 8), _cols(0, 16)
    meter.update(a2, a1, "a")
    meter.update(a1, a2, "a")
    meter.update(b2, b1, "b")
    meter.update(b1, b2, "b")
    out = meter.compute()
    assert out["class_iou"] == pytest.approx({"a": 100 / 3, "b": 50.0})
    assert out["miou"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)
    assert out["fg_iou"] == pytest.approx(40.0) and out["bg_iou"] == pytest.approx(50.0)
    assert out["fb_iou"] == pytest.approx(45.0) and out["classes"] == 2


def test_fewshot_class_iou_sums_before_dividing():
    # One perfect 1-pixel query and one query missing all 99 pixels, same class:
    # (1 + 0) / (1 + 99) = 1%, not the mean of the per-query IoUs (50%).
    one = np.zeros((10, 10), bool)
    one.flat[0] = True
    many = np.zeros((10, 10), bool)
    many.flat[:99] = True
    counts = M.mask_counts(one, one) + M.mask_counts(np.zeros((10, 10), bool), many)
    assert counts[1].tolist() == [1, 100]
    assert M.fewshot_scores({"c": counts})["miou"] == pytest.approx(1.0)


def test_fewshot_empty_union_scores_zero_and_no_class_is_nan():
    empty = np.zeros((4, 4), bool)
    out = M.fewshot_scores({"c": M.mask_counts(empty, empty)})
    assert out["miou"] == 0.0 and out["bg_iou"] == 100.0
    assert math.isnan(M.fewshot_scores({})["miou"])
    with pytest.raises(PainterError, match="differ"):
        M.mask_counts(empty, np.zeros((4, 5), bool))


def test_selectivity_by_hand():
    # A = cols 0:8, B = cols 16:24 of a 32 x 32 image (256 px each, disjoint).
    a, b = _cols(0, 8), _cols(16, 24)
    # Perfect: prompted IoU 100, other 0.
    assert M.selectivity(a, b, a, b) == pytest.approx(
        {"selectivity": 100.0, "prompted": 100.0, "other": 0.0}
    )
    # Ignoring the prompt: the same painting (both shapes) both times -> IoU 1/2 with each: 0.
    both = a | b
    assert M.selectivity(both, both, a, b) == pytest.approx(
        {"selectivity": 0.0, "prompted": 50.0, "other": 50.0}
    )
    # Always painting A: prompted (100 + 0) / 2, other (0 + 100) / 2 -> 0.
    assert M.selectivity(a, a, a, b)["selectivity"] == pytest.approx(0.0)
    # Prompted A: cols 0:4 (IoU 128/256 = 50 with A, 0 with B); prompted B: cols 12:24 (IoU
    # 256/384 with B, 0 with A): prompted = (50 + 66.67) / 2, other 0.
    out = M.selectivity(_cols(0, 4), _cols(12, 24), a, b)
    assert out["prompted"] == pytest.approx((50 + 200 / 3) / 2)
    assert out["selectivity"] == pytest.approx((50 + 200 / 3) / 2) and out["other"] == 0.0
    # Swapped (paints the other shape): -100.
    assert M.selectivity(b, a, a, b)["selectivity"] == pytest.approx(-100.0)


def test_selectivity_meter_averages_queries():
    a, b = _cols(0, 8), _cols(16, 24)
    meter = M.SelectivityMeter()
    assert math.isnan(meter.compute()["selectivity"]) and meter.compute()["queries"] == 0
    meter.update(a, b, a, b)  # 100
    meter.update(a | b, a | b, a, b)  # 0
    out = meter.compute()
    assert out["selectivity"] == pytest.approx(50.0) and out["queries"] == 2
    assert out["sem"] == pytest.approx(50.0)  # values 100 and 0: std 70.71 (n - 1), / sqrt(2)
    assert out["prompted"] == pytest.approx(75.0) and out["other"] == pytest.approx(25.0)
    assert M.mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0


def test_panoptic_meter_equals_panopticapi_pq_compute(tmp_path):
    """PQ/SQ/RQ per category and overall equal the reference ``pq_compute`` on a COCO panoptic set
    written to disk: things and stuff, a crowd region, void pixels, unmatched segments."""
    pytest.importorskip("panopticapi.evaluation")
    import json

    from panopticapi.evaluation import pq_compute
    from PIL import Image

    from painter_cli.inference import id_to_rgb

    cats = [
        {"id": 1, "name": "person", "isthing": 1, "supercategory": "p"},
        {"id": 2, "name": "car", "isthing": 1, "supercategory": "v"},
        {"id": 3, "name": "sky", "isthing": 0, "supercategory": "s"},
        {"id": 4, "name": "road", "isthing": 0, "supercategory": "s"},
    ]
    h, w = 40, 48
    images, gt_anns, pred_anns = [], [], []
    meter = M.PanopticMeter(cats)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for image_id in (1, 2):
        gt = np.zeros((h, w), np.int64)  # 0 = void
        gt[:20, :] = 10  # sky
        gt[20:, :24] = 11  # road
        gt[24:36, 4:16] = 12  # person
        gt[22:30, 30:44] = 13  # car
        gt[32:40, 30:40] = 14  # crowd of persons
        gt[0:4, 0:8] = 0  # void
        gt_info = [
            {"id": 10, "category_id": 3, "iscrowd": 0},
            {"id": 11, "category_id": 4, "iscrowd": 0},
            {"id": 12, "category_id": 1, "iscrowd": 0},
            {"id": 13, "category_id": 2, "iscrowd": 0},
            {"id": 14, "category_id": 1, "iscrowd": 1},
        ]
        pred = np.zeros((h, w), np.int64)
        pred[:18, :] = 5  # sky, IoU > 0.5
        pred[18:, :26] = 6  # road
        pred[25:36, 5:17] = 7  # person, shifted
        if image_id == 1:
            pred[22:30, 30:44] = 8  # a car labelled person: FN car + FP person
            pred[32:40, 30:40] = 9  # a person on the crowd region: not an FP
            pred[0:4, 0:8] = 15  # a car on void: not an FP
            pred[36:40, 44:48] = 16  # a stray road segment: FP
            pred_info = [(5, 3), (6, 4), (7, 1), (8, 1), (9, 1), (15, 2), (16, 4)]
        else:
            pred[22:30, 31:44] = 8  # car, matched
            pred_info = [(5, 3), (6, 4), (7, 1), (8, 2)]
        pred_info = [{"id": i, "category_id": c} for i, c in pred_info]
        name = f"{image_id:012d}.png"
        Image.fromarray(id_to_rgb(gt)).save(tmp_path / "gt" / name)
        Image.fromarray(id_to_rgb(pred)).save(tmp_path / "pred" / name)
        images.append(
            {"id": image_id, "file_name": name.replace(".png", ".jpg"), "height": h, "width": w}
        )
        for info in gt_info:
            info.update(area=int((gt == info["id"]).sum()), bbox=[0, 0, 1, 1])
        gt_anns.append({"image_id": image_id, "file_name": name, "segments_info": gt_info})
        pred_anns.append({"image_id": image_id, "file_name": name, "segments_info": pred_info})
        meter.update(pred, pred_info, gt, gt_info)
    gt_json, pred_json = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": gt_anns, "categories": cats}))
    pred_json.write_text(json.dumps({"annotations": pred_anns}))
    ref = pq_compute(str(gt_json), str(pred_json), str(tmp_path / "gt"), str(tmp_path / "pred"))
    ours = meter.compute()
    for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        for key in ("pq", "sq", "rq"):
            assert ours[key + suffix] == pytest.approx(100 * ref[group][key], abs=1e-9)
    for cat, row in ref["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert ours["per_class"][int(cat)][key] == pytest.approx(100 * row[key], abs=1e-9)
    assert 0 < ours["pq"] < 100  # the set exercises matches and misses
