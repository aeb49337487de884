//! Cone search on the celestial sphere.

use crate::{Error, Result};

/// A cone: every position within `radius` degrees of (`ra`, `dec`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cone {
    ra: f64,
    dec: f64,
    radius: f64,
    // Precomputed for the hot path.
    sin_dec: f64,
    cos_dec: f64,
    cos_radius: f64,
}

impl Cone {
    /// A cone around (`ra`, `dec`) degrees; `ra` is taken modulo 360, `dec` must lie in
    /// [-90, 90] and `radius` in [0, 180].
    pub fn new(ra: f64, dec: f64, radius: f64) -> Result<Cone> {
        let bad = |reason: &str| {
            Err(Error::InvalidCone {
                reason: reason.to_owned(),
            })
        };
        if !ra.is_finite() {
            return bad("ra must be a finite number of degrees");
        }
        if !(-90.0..=90.0).contains(&dec) {
            return bad("dec must be within [-90, 90] degrees");
        }
        if !(0.0..=180.0).contains(&radius) {
            return bad("radius must be within [0, 180] degrees");
        }
        let d = dec.to_radians();
        Ok(Cone {
            ra: ra.rem_euclid(360.0),
            dec,
            radius,
            sin_dec: d.sin(),
            cos_dec: d.cos(),
            cos_radius: radius.to_radians().cos(),
        })
    }

    /// Centre right ascension, degrees in [0, 360).
    pub fn ra(&self) -> f64 {
        self.ra
    }

    /// Centre declination, degrees.
    pub fn dec(&self) -> f64 {
        self.dec
    }

    /// Radius, degrees.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// Whether (`ra`, `dec`) degrees lies inside the cone (boundary included). Non-finite
    /// positions are outside.
    pub fn contains(&self, ra: f64, dec: f64) -> bool {
        if !ra.is_finite() || !dec.is_finite() {
            return false;
        }
        // Fast reject on the dot product, with a margin for rounding; exact test after.
        let (d, dra) = (dec.to_radians(), (ra - self.ra).to_radians());
        let dot = self.sin_dec * d.sin() + self.cos_dec * d.cos() * dra.cos();
        if dot < self.cos_radius - 1e-9 {
            return false;
        }
        angular_distance(self.ra, self.dec, ra, dec) <= self.radius
    }
}

/// Great-circle distance in degrees between two positions in degrees (Vincenty's formula
/// on the unit sphere: accurate at every separation, at the poles and across RA 0/360).
pub fn angular_distance(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (p1, p2) = (dec1.to_radians(), dec2.to_radians());
    let dl = (ra2 - ra1).to_radians();
    let (s1, c1, s2, c2) = (p1.sin(), p1.cos(), p2.sin(), p2.cos());
    let (sdl, cdl) = dl.sin_cos();
    let a = c2 * sdl;
    let b = c1 * s2 - s1 * c2 * cdl;
    let num = (a * a + b * b).sqrt();
    let den = s1 * s2 + c1 * c2 * cdl;
    num.atan2(den).to_degrees()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_across_ra_zero_and_handles_poles() {
        let c = Cone::new(359.9, 0.0, 0.5).unwrap();
        assert!(c.contains(0.3, 0.0) && c.contains(359.5, 0.1) && !c.contains(1.0, 0.0));
        let pole = Cone::new(0.0, 90.0, 1.0).unwrap();
        assert!(
            pole.contains(180.0, 89.5) && pole.contains(123.0, 89.01) && !pole.contains(0.0, 88.9)
        );
        let south = Cone::new(10.0, -89.9, 0.3).unwrap();
        assert!(south.contains(190.0, -89.9));
        assert!(Cone::new(-10.0, 0.0, 1.0).unwrap().contains(350.5, 0.0));
    }

    #[test]
    fn tiny_and_huge_radii() {
        let c = Cone::new(197.590032, 7.357639, 1.0 / 3600.0).unwrap();
        assert!(c.contains(197.590032, 7.357639));
        assert!(!c.contains(197.590032, 7.357639 + 1.1 / 3600.0));
        assert!(Cone::new(0.0, 0.0, 180.0).unwrap().contains(180.0, 0.0));
        assert!((angular_distance(0.0, 0.0, 180.0, 0.0) - 180.0).abs() < 1e-12);
    }

    #[test]
    fn invalid_cones_are_rejected() {
        assert!(Cone::new(0.0, 91.0, 1.0).is_err());
        assert!(Cone::new(f64::NAN, 0.0, 1.0).is_err());
        assert!(Cone::new(0.0, 0.0, -1.0).is_err());
        assert!(!Cone::new(0.0, 0.0, 1.0).unwrap().contains(f64::NAN, 0.0));
    }
}
